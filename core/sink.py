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
    #: The envelope sender; "" for the null sender ``<>`` (notices, bounces).
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
        # aiosmtpd keeps the null reverse-path as "<>"; ReceivedMail says "" for it.
        mail_from = "" if envelope.mail_from in (None, "<>") else envelope.mail_from
        mail = ReceivedMail(mail_from, tuple(envelope.rcpt_tos), raw)
        with self.sink.lock:
            self.sink.messages.append(mail)
            index = len(self.sink.messages)
        if self.sink.maildir:
            # Whole files only: whoever watches the folder never reads a half-written mail.
            partial = self.sink.maildir / f".{index:06d}.eml.part"
            partial.write_bytes(raw)
            partial.rename(self.sink.maildir / f"{index:06d}.eml")
        if self.sink.on_message:
            self.sink.on_message(mail)
        return "250 OK"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (aiosmtpd's controller cannot bind port 0 itself)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class SmtpSink:
    """Start with :meth:`start`, read :attr:`messages`, stop with :meth:`stop`.

    ``data_reply`` (e.g. ``"451 try later"``) or ``rcpt_reply(address)`` make it refuse mail, to
    test retries and bounces. A stopped sink can be started again on the same port (a relay that
    was down and comes back); :attr:`messages` keeps what it received before.
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
        self._host = host
        self._port = port or free_port(host)
        self._controller: Controller | None = None

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> SmtpSink:
        if self._controller is None:
            # aiosmtpd's controller closes its event loop on stop; a restart needs a new one.
            controller = Controller(_SinkHandler(self), hostname=self._host, port=self._port,
                                    enable_SMTPUTF8=True, decode_data=False,
                                    data_size_limit=None)
            controller.start()
            self._controller = controller
        return self

    def stop(self) -> None:
        """Stop listening; stopping a sink that is not running does nothing."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def to(self, address: str) -> list[ReceivedMail]:
        with self.lock:
            return [m for m in self.messages if address in m.rcpt_to]
