"""What the listener accepts into an SMTP transaction: the envelope checks of ``MAIL`` and ``RCPT``.

The SMTP listener (:mod:`siegel.gateway`) and ``siegel explain`` (:mod:`siegel.explain`) call these
same functions, so that explain refuses exactly what the listener refuses, with the same answer.
Each check raises :class:`Refused` carrying the SMTP reply; an accepted address comes back parsed.
The client-network check stays in the listener: it depends on the connection, not the envelope.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError

from aiosmtpd.smtp import SMTP

from siegel.addresses import Address, InvalidAddress
from siegel.config import Config, Tenant

#: What aiosmtpd passes (and keeps in ``envelope.mail_from``) for the null reverse-path ``<>``.
NULL_SENDER = "<>"
#: The longest line the listener takes in DATA, with its CRLF (aiosmtpd's limit; RFC 5321
#: section 4.5.3.1.6 allows 1000 octets).
LINE_LENGTH_LIMIT: int = SMTP.line_length_limit
_LINES = re.compile(rb"\r?\n")


class Refused(Exception):
    """The listener refuses this command; ``reply`` is the whole SMTP reply line."""

    def __init__(self, reply: str) -> None:
        self.reply = reply
        super().__init__(reply)

    @property
    def permanent(self) -> bool:
        return self.reply.startswith("5")


def smtp_path(text: str) -> str:
    """An address as the listener's SMTP parser (aiosmtpd) hands it to the checks below:
    ``<@a,@b:anna@amt.de>`` (a source route, ignored as RFC 5321 section 4.1.1.3 allows) and
    ``<anna(Kommentar)@amt.de>`` become ``anna@amt.de``; what it cannot parse is refused as
    aiosmtpd refuses it. For addresses typed outside SMTP (``siegel explain --to``)."""
    stripped = text.strip()
    if stripped in ("", NULL_SENDER):
        return stripped
    try:
        if stripped.startswith("<"):
            angle, rest = get_angle_addr(stripped)
            addr_spec = angle.addr_spec
        else:
            spec, rest = get_addr_spec(stripped)
            addr_spec = spec.addr_spec
    except HeaderParseError:
        raise Refused("553 5.1.3 Error: malformed address") from None
    if rest.strip():
        raise Refused("553 5.1.3 Error: malformed address")
    return str(addr_spec)


def parse_smtp_address(address: str) -> Address:
    """aiosmtpd hands over bytes that are not UTF-8 as lone surrogates, which
    :meth:`Address.parse` cannot encode."""
    try:
        address.encode("utf-8")
    except UnicodeError:
        raise InvalidAddress("the address is not valid UTF-8") from None
    return Address.parse(address)


def is_null_sender(address: str | None) -> bool:
    return not address or address == NULL_SENDER


def check_sender(address: str) -> Address | None:
    """``MAIL FROM``: the sender, or ``None`` for the null reverse-path. A sender that routes
    elsewhere is refused too: notices about the message go back to it."""
    if is_null_sender(address):
        return None
    try:
        return parse_smtp_address(address)
    except InvalidAddress as exc:
        raise Refused(f"553 5.1.7 Invalid sender address: {exc}") from None


def tenant_id(tenant: Tenant | None) -> str | None:
    return tenant.id if tenant is not None else None


def check_recipient(config: Config, address: str, sender: str | None,
                    accepted: Sequence[str], max_recipients: int) -> Address:
    """``RCPT TO``: the recipient, given the sender and the recipients accepted so far (all as
    the listener holds them)."""
    try:
        recipient = parse_smtp_address(address)
    except InvalidAddress as exc:
        raise Refused(f"553 5.1.3 Invalid recipient address: {exc}") from None
    if len(accepted) >= max_recipients:
        raise Refused("452 4.5.3 Too many recipients; send the rest in another transaction")
    mail_from = None if is_null_sender(sender) else sender
    if config.tenant_of_sender(Address.parse(mail_from) if mail_from else None) is None:
        owner = config.tenant_of_recipient(recipient)
        if owner is None:
            raise Refused("550 5.7.1 Relaying denied: neither sender nor recipient is a local "
                          "domain")
        # Compared by id: tenants carry their settings and need not be hashable.
        others = {tenant_id(config.tenant_of_recipient(Address.parse(r))) for r in accepted}
        if others and others != {owner.id}:
            raise Refused("452 4.5.3 Recipients of another tenant: send them in another "
                          "transaction")
    return recipient


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


def check_header_block(raw: bytes, max_header_size: int) -> None:
    """The end of ``DATA``: the header block is not larger than the listener's
    ``max_header_size`` (siegel's own check, after aiosmtpd's)."""
    if header_block_size(raw, max_header_size) > max_header_size:
        raise Refused(f"552 5.3.4 Message header block too large (limit {max_header_size} bytes)")


def check_data(raw: bytes, max_message_size: int) -> None:
    """The end of ``DATA``: what the listener's SMTP layer (aiosmtpd) refuses, for a message as a
    client sends it (line ends as CRLF, lines that start with a dot doubled). The listener
    itself leaves this to aiosmtpd with the same limits; ``siegel explain`` asks here."""
    lines = _LINES.split(raw)
    if lines and lines[-1] == b"":
        lines.pop()
    sent = [len(line) + 2 + line.startswith(b".") for line in lines]
    if any(length > LINE_LENGTH_LIMIT for length in sent):
        raise Refused("500 Line too long (see RFC5321 4.5.3.1.6)")
    if max_message_size and sum(sent) > max_message_size:
        raise Refused("552 Error: Too much mail data")
