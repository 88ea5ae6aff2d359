"""The SMTP listener (aiosmtpd).

It answers ``250`` for a message only after the store has committed it to disk, ``451`` when it
cannot store it, and refuses what no tenant owns (siegel is never an open relay). It checks the
envelope (client network, sender and recipient syntax, tenant ownership, size) before DATA, so
nothing it has answered 250 for is ever refused later: a message that is merely strange is
quarantined by the pipeline with the reason.

Clients outside ``allowed_clients`` may send only after SMTP AUTH, which a listener offers only
when it has an ``auth_users_file`` and only on an encrypted connection (:mod:`siegel.smtp_auth`);
an authenticated user sends only as the senders its line of that file allows (envelope sender and
``From:``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import logging
import socket
import ssl
import weakref
from datetime import timedelta
from typing import Any

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, Session

from siegel import submission
from siegel.admission import (
    NULL_SENDER,
    Refused,
    check_header_block,
    check_recipient,
    check_sender,
)
from siegel.config import ListenerConfig
from siegel.runtime import Runtime
from siegel.smtp_auth import USER_LIMIT_FACTOR, SmtpUser, UsersFile, verify_password
from siegel.store import StoreError
from siegel.throttle import KEYS_NAMESPACE, Throttle, shared_secret
from siegel.throttle import NAMESPACE as THROTTLE_NAMESPACE

log = logging.getLogger(__name__)

__all__ = ["NULL_SENDER", "GatewayHandler", "SmtpGateway", "server_tls_context"]



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


def _peer_host(session: Session) -> str | None:
    peer: object = session.peer  # aiosmtpd's annotation is narrower than what it stores
    return str(peer[0]) if isinstance(peer, tuple) else None


def _encrypted(server: SMTP) -> bool:
    """Whether this connection is encrypted now (after STARTTLS, or implicit TLS)."""
    transport = server.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None


#: What aiosmtpd answers for a failed AUTH (RFC 4954).
_AUTH_INVALID = "535 5.7.8 Authentication credentials invalid"
_AUTH_THROTTLED = "454 4.7.0 Too many failed authentication attempts; try again later"


class GatewayHandler:
    """aiosmtpd handler: envelope checks, SMTP AUTH and durable acceptance."""

    def __init__(self, runtime: Runtime, listener: ListenerConfig) -> None:
        self.runtime = runtime
        self.listener = listener
        self.networks = [ipaddress.ip_network(n, strict=False) for n in listener.allowed_clients]
        self.storing = _Storing()
        #: Bounce tokens of the transaction (RCPT to a VERP bounce address), per envelope.
        self.bounce_tokens: weakref.WeakKeyDictionary[Envelope, list[str]] = (
            weakref.WeakKeyDictionary())
        self.users = (None if listener.auth_users_file is None else
                      UsersFile(runtime.config.path(listener.auth_users_file),
                                runtime.config.tenants))
        self._throttle_key: bytes | None = None

    def _client_allowed(self, session: Session) -> bool:
        host = _peer_host(session)
        if host is None:  # a Unix socket: local by definition
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)

    # -- SMTP AUTH ----------------------------------------------------------------------------

    async def _throttle_secret(self) -> bytes:
        if self._throttle_key is None:
            self._throttle_key = await shared_secret(self.runtime.state(KEYS_NAMESPACE))
        return self._throttle_key

    def _auth_throttle(self, client: str | None, user: str | None) -> Throttle:
        """Failed logins per client address and per user name, counted in the store so that
        every instance counts together and a restart forgets nothing."""
        limit = self.listener.auth_max_failures
        return Throttle(self.runtime.state(THROTTLE_NAMESPACE), self.runtime.clock,
                        self._throttle_secret, kind="smtp-auth", scope="listener",
                        account=None if user is None else user.casefold(), client=client,
                        limit=limit * USER_LIMIT_FACTOR, client_limit=limit,
                        per=timedelta(seconds=self.listener.auth_failure_window_seconds))

    def _auth_offered(self, server: SMTP) -> bool:
        return self.users is not None and _encrypted(server)

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname  # what aiosmtpd does itself when there is no hook
        if self._auth_offered(server):
            return responses
        return [r for r in responses if not r[4:].upper().startswith("AUTH")]

    async def handle_AUTH(self, server: SMTP, session: Session, envelope: Envelope,
                          args: list[str]) -> object:
        if self.users is None:
            return "502 5.5.1 AUTH is not available on this listener"
        if not _encrypted(server):
            return "538 5.7.11 Encryption required for requested authentication mechanism"
        try:
            blocked = not (await self._auth_throttle(_peer_host(session), None).check()).allowed
        except StoreError:
            log.exception("could not read the AUTH throttle; answering 454")
            return "454 4.7.0 Temporary authentication failure"
        if blocked:
            log.warning("AUTH from %s refused: too many failed attempts", session.peer)
            return _AUTH_THROTTLED
        return MISSING  # go on with the mechanism (auth_PLAIN, auth_LOGIN below)

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        """RFC 4616; the authorization identity, if given, must be the user itself."""
        blob: object = (await server.challenge_auth("") if len(args) == 1
                        else _b64decode(args[1]))
        if not isinstance(blob, bytes):
            if blob is None:  # challenge_auth answers its own failures (MISSING)
                await server.push("501 5.5.2 Can't decode base64")
            return AuthResult(success=False, handled=True)
        parts = blob.split(b"\x00")
        if len(parts) != 3 or parts[0] not in (b"", parts[1]):
            await server.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        return await self._authenticate(server, parts[1], parts[2])

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        login: object = (await server.challenge_auth(server.AuthLoginUsernameChallenge)
                         if len(args) == 1 else _b64decode(args[1]))
        if isinstance(login, bytes):
            password = await server.challenge_auth(server.AuthLoginPasswordChallenge)
            if isinstance(password, bytes):
                return await self._authenticate(server, login, password)
        elif login is None:
            await server.push("501 5.5.2 Can't decode base64")
        return AuthResult(success=False, handled=True)

    async def _authenticate(self, server: SMTP, login: bytes, password: bytes) -> AuthResult:
        assert self.users is not None and server.session is not None
        client = _peer_host(server.session)
        try:
            name = login.decode("utf-8")
        except UnicodeDecodeError:
            name = ""
        users = self.users.users()
        if users is None:
            log.error("SMTP AUTH unavailable: %s", self.users.error)
            return AuthResult(success=False, handled=False,
                              message="454 4.7.0 Temporary authentication failure")
        throttle = self._auth_throttle(client, name)
        try:
            allowed = (await throttle.attempt()).allowed
        except StoreError:
            log.exception("could not count an AUTH attempt; answering 454")
            return AuthResult(success=False, handled=False,
                              message="454 4.7.0 Temporary authentication failure")
        if not allowed:
            log.warning("AUTH from %s refused: too many failed attempts", server.session.peer)
            return AuthResult(success=False, handled=False, message=_AUTH_THROTTLED)
        user = users.get(name)
        verified = await verify_password(user, password) and user is not None
        if verified:
            # A right password is not a failure: give back what the attempt counted.
            with contextlib.suppress(StoreError):
                await throttle.succeeded()
        if verified and user is not None:
            log.info("client %s authenticated as %s", server.session.peer, user.name)
            return AuthResult(success=True, auth_data=user)
        log.warning("failed AUTH from %s", server.session.peer)  # the name may be a password
        return AuthResult(success=False, handled=False, message=_AUTH_INVALID)

    def _client_refusal(self, session: Session) -> str | None:
        """Why this client may not send at all, or None."""
        if session.authenticated or self._client_allowed(session):
            return None
        if self.users is not None:
            return "530 5.7.0 Authentication required"
        log.warning("refused client %s: not in allowed_clients", session.peer)
        return "554 5.7.1 Client not allowed to send through this gateway"

    def _user(self, session: Session) -> SmtpUser | None:
        user: object = session.auth_data if session.authenticated else None
        return user if isinstance(user, SmtpUser) else None

    # -- the envelope -------------------------------------------------------------------------

    async def handle_MAIL(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, mail_options: list[str]) -> str:
        refusal = self._client_refusal(session)
        if refusal is not None:
            return refusal
        try:
            check_sender(address)
        except Refused as refused:
            return refused.reply
        refusal = submission.sender_refusal(self.runtime.config, self._user(session), address)
        if refusal is not None:
            return refusal
        # The null sender stays "<>" here: aiosmtpd refuses RCPT while mail_from is empty.
        envelope.mail_from = address or NULL_SENDER
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        try:
            recipient = check_recipient(self.runtime.config, address, _sender(envelope),
                                        envelope.rcpt_tos, self.listener.max_recipients)
        except Refused as refused:
            log.info("refused recipient: %s", refused.reply)
            return refused.reply
        token = self.runtime.bounce_token(recipient)
        bounce_tokens = self.bounce_tokens.setdefault(envelope, [])
        if token is not None or bounce_tokens:
            return await self._bounce_rcpt(envelope, address, token, bounce_tokens)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def _bounce_rcpt(self, envelope: Envelope, address: str, token: str | None,
                           bounce_tokens: list[str]) -> str:
        """RCPT to a VERP bounce address (any sender, the null sender included): accepted while
        its token is known. Bounces are not mail to store and deliver, so a transaction has
        either bounce addresses or other recipients."""
        if token is None or (envelope.rcpt_tos and not bounce_tokens):
            return "452 4.5.3 Bounces and other mail: send them in separate transactions"
        try:
            known = await self.runtime.bounce_token_known(token)
        except StoreError:
            log.exception("could not look up a bounce address; answering 451")
            return "451 4.3.0 Temporary problem; please try again later"
        if not known:
            return "550 5.1.1 Unknown or expired bounce address"
        bounce_tokens.append(token)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK (bounce address)"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        if not isinstance(raw, bytes):
            raw = str(raw or "").encode("utf-8", "surrogateescape")
        bounce_tokens = self.bounce_tokens.pop(envelope, None)
        try:
            check_header_block(raw, self.listener.max_header_size)
        except Refused as refused:
            log.warning("refused a message: %s", refused.reply)
            return refused.reply
        if bounce_tokens:
            try:
                with self.storing:
                    await self.runtime.accept_bounce(raw, bounce_tokens)
            except Exception:
                log.exception("could not record a bounce; answering 451")
                return "451 4.3.0 Bounce not recorded (temporary problem); please try again later"
            return "250 2.0.0 OK bounce recorded"
        refusal = await submission.header_sender_refusal(self.runtime.config,
                                                          self._user(session), raw)
        if refusal is not None:
            return refusal
        try:
            with self.storing:
                message_id = await submission.store(self.runtime, raw, _sender(envelope),
                                                    envelope.rcpt_tos)
        except Refused as refused:
            return refused.reply
        log.info("accepted message %s (%d bytes, %d recipients)", message_id, len(raw),
                 len(envelope.rcpt_tos))
        return f"250 2.0.0 OK queued as {message_id}"


def _b64decode(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None


def server_tls_context(listener: ListenerConfig, base: Any) -> ssl.SSLContext | None:
    if not listener.tls:
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
                    tls_context=None if listener.implicit_tls else tls,
                    require_starttls=listener.starttls == "required",
                    # siegel decides itself (handle_EHLO, handle_AUTH): aiosmtpd's own check
                    # does not see implicit TLS.
                    auth_require_tls=False,
                )
                self.sessions.add(session)
                return session

            server = await loop.create_server(factory, listener.host, listener.port,
                                              ssl=tls if listener.implicit_tls else None)
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
