"""A real SMTP server that keeps what it receives: for tests (``siegel.testing``) and for trying
siegel out (``siegel sink``). Not for production use."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

import attrs
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from siegel.model import parse_email


@attrs.frozen
class ReceivedMail:
    mail_from: str
    rcpt_to: tuple[str, ...]
    raw: bytes = attrs.field(repr=False)

    @property
    def parsed(self) -> EmailMessage:
        return parse_email(self.raw)


class _SinkHandler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        reply = self.sink.rcpt_reply(address) if self.sink.rcpt_reply else None
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.sink.data_reply:
            return self.sink.data_reply
        raw = envelope.original_content or b""
        mail = ReceivedMail(envelope.mail_from or "", tuple(envelope.rcpt_tos), raw)
        with self.sink.lock:
            self.sink.messages.append(mail)
        if self.sink.on_message:
            self.sink.on_message(mail)
        if self.sink.maildir:
            index = len(self.sink.messages)
            (self.sink.maildir / f"{index:06d}.eml").write_bytes(raw)
        return "250 OK"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (aiosmtpd's controller cannot bind port 0 itself)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class SmtpSink:
    """Start with :meth:`start`, read :attr:`messages`, stop with :meth:`stop`.

    ``data_reply`` (e.g. ``"451 try later"``) or ``rcpt_reply(address)`` make it refuse mail, to
    test retries and bounces.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, maildir: Path | None = None,
                 on_message: Callable[[ReceivedMail], None] | None = None) -> None:
        self.messages: list[ReceivedMail] = []
        self.lock = threading.Lock()
        self.data_reply: str | None = None
        self.rcpt_reply: Callable[[str], str | None] | None = None
        self.maildir = maildir
        self.on_message = on_message
        if maildir:
            maildir.mkdir(parents=True, exist_ok=True)
        if port == 0:
            port = free_port(host)
        self._controller = Controller(_SinkHandler(self), hostname=host, port=port,
                                      enable_SMTPUTF8=True, decode_data=False,
                                      data_size_limit=None)

    @property
    def host(self) -> str:
        return str(self._controller.hostname)

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def to(self, address: str) -> list[ReceivedMail]:
        with self.lock:
            return [m for m in self.messages if address in m.rcpt_to]
