"""Bounces of system mails about a held copy (an invitation): the clerk learns within minutes that
the citizen's address does not exist, instead of when the hold expires days later.

Such a mail leaves with a VERP envelope sender, ``LOCAL+TOKEN@DOMAIN`` built from the tenant's
``bounce_address``. The token is 160 random bits (lower-case base32, as some mail systems fold
the case of local parts), single-purpose (it only ever ends one held copy), expiring
(:data:`TOKEN_DAYS`, longer than any MTA keeps a message queued) and stored only as its SHA-256
in the store's state, with the message and recipient it stands for. The listener accepts ``RCPT``
for a bounce address only while its token is known, and hands the bounce to
:meth:`siegel.runtime.Runtime.accept_bounce`.

What a bounce says is read from its RFC 3464 ``message/delivery-status`` part (the email package
parses the fields); a bounce without one is judged by ``flufl.bounce`` (GNU Mailman's detectors
for the formats MTAs really send) and counts as a failure only when a detector names the
recipient as failed permanently. A report that says "delayed" or has a 4.x.x status leaves the
held copy as it is.
"""

from __future__ import annotations

import base64
import enum
import json
import re
import secrets
from datetime import timedelta
from email.message import EmailMessage, Message

import attrs
from flufl.bounce import all_failures

from siegel.addresses import Address, InvalidAddress
from siegel.crypto import hash_token
from siegel.model import Text, parse_email
from siegel.state import PluginState

#: Store namespace of bounce tokens: SHA-256 of the token -> what it stands for.
TOKENS = "siegel.bounce-tokens"
#: Store namespace of permanent failures: ``TENANT/MESSAGE/RECIPIENT`` -> the report.
FAILED = "siegel.bounced"
#: How long a token is honoured: longer than an MTA queues a message (Postfix: 5 days).
TOKEN_DAYS = 7.0
#: The part of a remote server's answer that is kept and shown to the clerk.
_MAX_DIAGNOSTIC = 300
_TOKEN = re.compile(r"[a-z2-7]{32}")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class BounceKind(enum.StrEnum):
    #: The address does not exist, or the receiving system refuses the mail for good.
    PERMANENT = "permanent"
    #: Delayed or refused for now; the sending MTA keeps trying.
    TRANSIENT = "transient"
    #: Not a delivery failure (a success report, an auto-reply, something unrecognisable).
    NONE = "none"


@attrs.frozen(kw_only=True)
class BounceReport:
    """What a bounce says about the one recipient its token stands for."""

    kind: BounceKind
    #: RFC 3463 status (``5.1.1``), or empty when the bounce gives none.
    status: str = ""
    #: The remote server's answer, shortened, without control characters; never message content.
    diagnostic: str = ""

    @property
    def address_unknown(self) -> bool:
        """The address (mailbox, system) is bad, rather than the message: RFC 3463 status
        5.1.x, or no status at all (a detector named the address as failed for good)."""
        return self.status.startswith("5.1.") or not self.status

    def reason(self, recipient: Address) -> Text:
        """Why the copy ended, for the clerk's notice."""
        said = f" ({self.diagnostic})" if self.diagnostic else (
            f" (Status {self.status})" if self.status else "")
        if self.address_unknown:
            return Text(de=f"Die Adresse {recipient} existiert nicht: der Mailserver des Empfängers "
                        f"hat die Einladung zurückgewiesen{said}",
                        en=f"the address {recipient} does not exist: the recipient's mail server "
                        f"returned the invitation{said}")
        return Text(de=f"Der Mailserver des Empfängers {recipient} lehnt die Zustellung dauerhaft "
                    f"ab{said}",
                    en=f"the mail server of {recipient} refuses delivery permanently{said}")

    def encode(self) -> bytes:
        return json.dumps(attrs.asdict(self)).encode()

    @classmethod
    def decode(cls, raw: bytes) -> BounceReport:
        data = json.loads(raw)
        return cls(kind=BounceKind(data["kind"]), status=data.get("status", ""),
                   diagnostic=data.get("diagnostic", ""))


@attrs.frozen(kw_only=True)
class BounceToken:
    """What a token stands for: one recipient's copy of one message of one tenant."""

    tenant: str
    message_id: str
    recipient: str
    key: str


def new_token() -> str:
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii").lower()




def verp_address(bounce_address: Address, token: str) -> str:
    """``siegel-bounce@behoerde.example`` and a token -> ``siegel-bounce+TOKEN@behoerde.example``."""
    return f"{bounce_address.local}+{token}@{bounce_address.domain}"


def token_in(recipient: Address, bounce_address: Address) -> str | None:
    """None if ``recipient`` is not ``bounce_address`` (with or without ``+TOKEN``); else what
    follows the ``+``, lower-cased (mail systems may fold the case), ``""`` if nothing does.
    Whether it is a token that was issued is for :func:`look_up` to say."""
    local, _plus, token = recipient.local.partition("+")
    if recipient.domain != bounce_address.domain:
        return None
    if local.lower() != bounce_address.local.lower():
        return None
    return token.lower()


async def issue(tokens: PluginState, *, tenant: str, message_id: str, recipient: Address) -> str:
    token = new_token()
    record = {"tenant": tenant, "message_id": message_id, "recipient": str(recipient)}
    await tokens.put(hash_token(token), json.dumps(record).encode(),
                     ttl=timedelta(days=TOKEN_DAYS), expect_version=0)
    return token


async def look_up(tokens: PluginState, token: str) -> BounceToken | None:
    if not _TOKEN.fullmatch(token):
        return None
    record = await tokens.get(hash_token(token))
    if record is None:
        return None
    data = json.loads(record.value)
    return BounceToken(tenant=data["tenant"], message_id=data["message_id"],
                       recipient=data["recipient"], key=record.key)


def failure_key(tenant: str, message_id: str, recipient: Address | str) -> str:
    return f"{tenant}/{message_id}/{recipient}"


# -- reading a bounce -----------------------------------------------------------------------


def _clean(text: str) -> str:
    text = _CONTROL.sub(" ", text)
    text = re.sub(r"\s{2,}", " ", text).strip()
    return text[:_MAX_DIAGNOSTIC] + ("…" if len(text) > _MAX_DIAGNOSTIC else "")


def _field(block: Message, name: str) -> str:
    try:
        value = block.get(name)
    except Exception:  # a malformed field counts as absent
        return ""
    return _clean(str(value)) if value is not None else ""


def _status_of(block: Message) -> str:
    for name in ("Status", "Diagnostic-Code"):
        match = _STATUS.search(_field(block, name))
        if match:
            return match.group(0)
    return ""


def _recipient_blocks(message: EmailMessage) -> list[Message] | None:
    """The per-recipient field blocks of the first delivery-status part, or None if it has none."""
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            # The first block is about the message, the others each about one recipient.
            return [block for block in payload[1:] if isinstance(block, Message)]
        return []
    return None


def _names(block: Message, recipient: Address) -> bool:
    for name in ("Original-Recipient", "Final-Recipient"):
        value = _field(block, name)
        _type, _, address = value.partition(";")
        try:
            if address.strip() and Address.parse(address.strip().strip("<>")) == recipient:
                return True
        except InvalidAddress:
            continue
    return False


def _from_dsn(blocks: list[Message], recipient: Address) -> BounceReport:
    # The token names the recipient; a report about several (it should not be) is read for
    # that one where it can be told apart, else for all of them.
    own = [block for block in blocks if _names(block, recipient)] or blocks
    findings: list[BounceReport] = []
    for block in own:
        action = _field(block, "Action").lower()
        status = _status_of(block)
        diagnostic = _field(block, "Diagnostic-Code")
        _type, semicolon, text = diagnostic.partition(";")
        diagnostic = text.strip() if semicolon else diagnostic
        if action == "failed" and not status.startswith("4"):
            kind = BounceKind.PERMANENT
        elif action == "delayed" or status.startswith("4"):
            kind = BounceKind.TRANSIENT
        elif not action and status.startswith("5"):
            kind = BounceKind.PERMANENT
        else:  # delivered, relayed, expanded
            kind = BounceKind.NONE
        findings.append(BounceReport(kind=kind, status=status, diagnostic=diagnostic))
    for kind in (BounceKind.PERMANENT, BounceKind.TRANSIENT):
        for finding in findings:
            if finding.kind is kind:
                return finding
    return BounceReport(kind=BounceKind.NONE)


def _from_heuristics(message: EmailMessage, recipient: Address) -> BounceReport:
    try:
        temporary, permanent = all_failures(message)
    except Exception:  # a detector that trips over odd input recognises nothing
        return BounceReport(kind=BounceKind.NONE)

    def named(addresses: frozenset[bytes]) -> bool:
        for raw in addresses:
            try:
                if Address.parse(raw.decode("utf-8", "replace").strip("<>")) == recipient:
                    return True
            except InvalidAddress:
                continue
        return False

    if named(permanent):
        return BounceReport(kind=BounceKind.PERMANENT)
    if named(temporary):
        return BounceReport(kind=BounceKind.TRANSIENT)
    return BounceReport(kind=BounceKind.NONE)


def report_from_reply(reply: str) -> BounceReport:
    """A permanent failure as the relay answered it directly (``550 5.1.1 ...``)."""
    match = _STATUS.search(reply)
    # Without an enhanced status code the reply says only "permanent": RFC 3463's 5.0.0.
    status = match.group(0) if match and match.group(1) == "5" else "5.0.0"
    return BounceReport(kind=BounceKind.PERMANENT, status=status, diagnostic=_clean(reply))


def read_bounce(raw: bytes, recipient: Address) -> BounceReport:
    """What the bounce ``raw`` says about ``recipient``. CPU work: call it off the event loop."""
    try:
        message = parse_email(raw)
        blocks = _recipient_blocks(message)
    except Exception:
        return BounceReport(kind=BounceKind.NONE)
    if blocks is not None:
        return _from_dsn(blocks, recipient)
    return _from_heuristics(message, recipient)

