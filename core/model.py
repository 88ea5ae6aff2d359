"""The data that flows through siegel: messages, addresses, verdicts, results and events.

Everything here is a frozen attrs value. Plugins receive these and return these; nothing in the
pipeline passes dicts between stages.
"""

from __future__ import annotations

import email.policy
import enum
import functools
from collections.abc import Iterable, Mapping
from datetime import datetime
from email.feedparser import BytesFeedParser
from email.headerregistry import BaseHeader, HeaderRegistry
from email.message import EmailMessage
from typing import Literal

import attrs

from siegel.addresses import Address

Language = Literal["de", "en"]

# How much of a message the parser is fed at a time. Handing it the whole message at once makes
# it hold the text in a StringIO, four bytes per character: about 260 MB at peak for a message of
# 34 MB. Fed in pieces, it holds one piece and the lines of the part it is reading.
_PARSE_CHUNK_BYTES = 64 * 1024
_CACHED_HEADER_CHARS = 2048
# The fields classifiers and renderers ask about again and again, part by part. Others (Subject,
# Date, Message-ID) differ from message to message, and a parsed field with its parse tree takes
# about 16 KB: remembering those would only hold memory.
_REMEMBERED_FIELDS = frozenset({"content-type", "content-transfer-encoding",
                                "content-disposition"})
#: The longest header field (in characters, folding included) that is parsed. The email package
#: parses folded encoded words and long parameter lists in time that grows faster than the
#: field: 42 s for a Subject of 1 MB of encoded words, 17 s for a Content-Type of 474 KB.
MAX_PARSED_FIELD_CHARS = 100 * 1024


class HeaderFieldTooLarge(ValueError):
    """A header field longer than :data:`MAX_PARSED_FIELD_CHARS` was to be parsed."""


class _RememberingHeaderRegistry(HeaderRegistry):
    """The standard header classes, but a MIME structure field seen recently is not parsed again.

    The email package parses a header field on every access: classifiers asking for the content
    type of the same parts took a fifth of the gateway's main thread. Header objects are immutable
    (``str`` with read-only attributes), so equal fields can share one."""

    @functools.lru_cache(maxsize=256)  # noqa: B019 (one registry for the process)
    def _parsed(self, name: str, value: str) -> BaseHeader:
        return super().__call__(name, value)

    def __call__(self, name: str, value: str) -> BaseHeader:
        if len(value) > MAX_PARSED_FIELD_CHARS:
            raise HeaderFieldTooLarge(
                f"the header field {name[:80]!r} has {len(value)} characters; fields longer "
                f"than {MAX_PARSED_FIELD_CHARS} are not read")
        if name.lower() in _REMEMBERED_FIELDS and len(value) <= _CACHED_HEADER_CHARS:
            return self._parsed(name, value)
        return super().__call__(name, value)


#: ``email.policy.default`` with remembered header parsing; what siegel parses messages with.
POLICY = email.policy.default.clone(header_factory=_RememberingHeaderRegistry())


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


def _str_mapping(values: Mapping[str, str]) -> dict[str, str]:
    return dict(values)


@attrs.frozen
class Text:
    """A sentence a person reads, in German and English.

    Reasons, notices and portal texts are shown to clerks and citizens, so every one of them exists in
    both languages; German is the default.
    """

    de: str
    en: str

    def get(self, language: str) -> str:
        return self.en if language == "en" else self.de

    def format(self, **values: object) -> Text:
        """Fill the ``{name}`` fields of both sentences; a value that is a :class:`Text` fills
        each language with its own sentence::

            >>> found = Text(de="{count} Teile nicht lesbar: {what}",
            ...              en="{count} parts unreadable: {what}")
            >>> found.format(count=2, what=Text(de="verschlüsselt", en="encrypted")).en
            '2 parts unreadable: encrypted'

        Values are inserted as they are, never read as templates themselves; write a literal
        brace in a template as ``{{`` or ``}}``."""
        return Text(de=self.de.format(**{k: v.de if isinstance(v, Text) else v
                                         for k, v in values.items()}),
                    en=self.en.format(**{k: v.en if isinstance(v, Text) else v
                                         for k, v in values.items()}))

    def __str__(self) -> str:
        return self.de


class Level(enum.IntEnum):
    """How strictly a recipient's copy of a message must be handled. Higher is stricter."""

    #: May leave as it is.
    PLAIN = 0
    #: Must not leave unprotected.
    PROTECT = 1
    #: Must not leave at all until a person has looked at it.
    QUARANTINE = 2


class IdentityLevel(enum.IntEnum):
    """How well a recipient account's owner is known (:class:`siegel.Account`); ordered, so
    ``level >= required`` is the check. A tenant, a plugin set or a :class:`Finding` can require
    a level to read a message or to write."""

    #: Proved control of the address (registered through a link sent to it).
    MAILBOX = 1
    #: Also received a PIN letter by post and confirmed it on the portal.
    CONFIRMED = 2

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def of(cls, label: str | IdentityLevel) -> IdentityLevel:
        """The level named ``label`` (``"mailbox"``, ``"confirmed"``); a level stays itself."""
        if isinstance(label, IdentityLevel):
            return label
        try:
            return cls[label.upper()]
        except KeyError:
            raise ValueError(f"unknown identity level {label!r}; known: "
                             + ", ".join(level.label for level in cls)) from None


def identity_level(value: str | IdentityLevel) -> IdentityLevel:
    """``value`` as an :class:`IdentityLevel` (an attrs converter: levels may be given by name)."""
    return IdentityLevel.of(value)


def _optional_identity_level(value: str | IdentityLevel | None) -> IdentityLevel | None:
    return None if value is None else IdentityLevel.of(value)


@attrs.frozen(kw_only=True)
class Finding:
    """One classifier's statement about one recipient's copy of a message.

    ``releasable`` findings are policy decisions that an administrator may override with
    ``siegel queue release``; findings the pipeline makes about failures are never releasable, so a
    release cannot turn a crashed classifier into a plain-text delivery.
    """

    level: Level = attrs.field(converter=Level)
    code: str
    reason: Text
    source: str = ""
    warn_sender: bool = False
    releasable: bool = True
    #: The identity level the recipient's account must have to read this copy (in a postbox);
    #: ``None``: no more than the tenant asks (:attr:`siegel.RecipientContext.required_level`).
    identity_level: IdentityLevel | None = attrs.field(
        default=None, converter=_optional_identity_level)


def _findings(values: Iterable[Finding]) -> tuple[Finding, ...]:
    return tuple(values)


@attrs.frozen
class Verdict:
    """The combined classification of one recipient: the strictest finding wins."""

    findings: tuple[Finding, ...] = attrs.field(converter=_findings)

    @property
    def level(self) -> Level:
        return max((finding.level for finding in self.findings), default=Level.PLAIN)

    @property
    def deciding(self) -> tuple[Finding, ...]:
        """The findings at the verdict's level: the reasons the verdict is what it is."""
        return tuple(f for f in self.findings if f.level == self.level)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.warn_sender)

    def without_releasable_quarantine(self) -> Verdict:
        return Verdict(
            f for f in self.findings if not (f.level is Level.QUARANTINE and f.releasable)
        )


def _addresses(values: Iterable[Address]) -> tuple[Address, ...]:
    return tuple(values)


@attrs.frozen
class Envelope:
    """The SMTP envelope: who the message is from and to, as the transport says, not the headers."""

    mail_from: Address | None
    rcpt_to: tuple[Address, ...] = attrs.field(converter=_addresses)

    @rcpt_to.validator
    def _at_least_one(self, _attribute: object, value: tuple[Address, ...]) -> None:
        if not value:
            raise ValueError("an envelope needs at least one recipient")


class Origin(enum.StrEnum):
    """Where a stored message came from."""

    #: Accepted from a mail server or client over SMTP (or submitted by a library user).
    SMTP = "smtp"
    #: Written by siegel or a plugin (a notice, an invitation); it is delivered as it is.
    SYSTEM = "system"
    #: Written by a recipient on the portal (a postbox reply or new message): classified,
    #: protected and delivered like mail from SMTP, but its sender gets no notice mails.
    PORTAL = "portal"


def parse_email(raw: bytes) -> EmailMessage:
    """Parse RFC 5322 bytes with the modern policy.

    The parser is lenient: broken input becomes ``defects`` on the parts rather than an exception.
    Header access can still raise on pathological input, so callers treat any exception here and
    in later header access as "unparseable" (the pipeline quarantines such a message).
    """
    parser = BytesFeedParser(policy=POLICY)
    for start in range(0, len(raw), _PARSE_CHUNK_BYTES):
        parser.feed(raw[start:start + _PARSE_CHUNK_BYTES])
    message = parser.close()
    assert isinstance(message, EmailMessage)
    return message


@attrs.frozen(kw_only=True)
class Message:
    """A message as accepted: the original bytes, never changed, and where it belongs."""

    id: str
    tenant: str
    envelope: Envelope
    raw: bytes = attrs.field(repr=False)
    received_at: datetime
    origin: Origin = Origin.SMTP
    #: For system messages: the channel to deliver them through.
    channel: str | None = None

    @functools.cached_property
    def parsed(self) -> EmailMessage:
        return parse_email(self.raw)


@attrs.frozen
class Availability:
    """Whether a protection method can serve a recipient, and why."""

    available: bool
    reason: Text

    @classmethod
    def yes(cls, reason: Text) -> Availability:
        return cls(True, reason)

    @classmethod
    def no(cls, reason: Text) -> Availability:
        return cls(False, reason)


@attrs.frozen(kw_only=True)
class Outgoing:
    """One copy of a message on its way out through a delivery channel."""

    channel: str
    mail_from: str
    recipients: tuple[str, ...] = attrs.field(converter=_strings)
    raw: bytes = attrs.field(repr=False)


def _outgoing(values: Iterable[Outgoing]) -> tuple[Outgoing, ...]:
    return tuple(values)


@attrs.frozen(kw_only=True)
class Protected:
    """A protection method's result: these copies may leave."""

    outgoing: tuple[Outgoing, ...] = attrs.field(converter=_outgoing)
    reason: Text


@attrs.frozen(kw_only=True)
class Held:
    """A protection method's result: the message waits (e.g. for the recipient to choose a password).

    The message stays in the store, encrypted. The plugin releases it later through
    :meth:`siegel.Services.release`; when ``until`` passes first, the recipient's copy expires and
    the sender is told.
    """

    reason: Text
    until: datetime | None = None


@attrs.frozen(kw_only=True)
class RetryLater:
    """A protection method's result: it could not protect the copy this time, for a reason that
    passes (a render worker died, a directory did not answer); try again later.

    The copy goes back to the queue with back-off, like a temporary delivery failure. After
    ``[delivery] max_protect_retries`` such answers in a row it is quarantined with ``reason``,
    so a copy that fails the method every time (one that kills its worker, say) is not retried
    forever. Return it only for causes that a retry can cure; a copy the method can never
    protect should raise (it is quarantined at once).
    """

    reason: Text


ProtectionResult = Protected | Held | RetryLater


class DeliveryStatus(enum.StrEnum):
    DELIVERED = "delivered"
    TEMPORARY_FAILURE = "temporary-failure"
    PERMANENT_FAILURE = "permanent-failure"


@attrs.frozen
class DeliveryResult:
    """What a delivery channel did with one :class:`Outgoing`. ``detail`` is the server's answer."""

    status: DeliveryStatus
    detail: str

    @classmethod
    def delivered(cls, detail: str) -> DeliveryResult:
        return cls(DeliveryStatus.DELIVERED, detail)

    @classmethod
    def temporary_failure(cls, detail: str) -> DeliveryResult:
        return cls(DeliveryStatus.TEMPORARY_FAILURE, detail)

    @classmethod
    def permanent_failure(cls, detail: str) -> DeliveryResult:
        return cls(DeliveryStatus.PERMANENT_FAILURE, detail)


class RecipientState(enum.StrEnum):
    """Where one recipient's copy of a message stands. Survives restarts (it lives in the store)."""

    #: Stored and waiting to be processed or retried.
    ACCEPTED = "accepted"
    #: Waiting for something outside siegel (e.g. the recipient's password); expires.
    HELD = "held"
    #: Stopped; needs an administrator (``siegel queue``). Nothing went out.
    QUARANTINED = "quarantined"
    DELIVERED = "delivered"
    #: Could not be delivered; the sender was told.
    FAILED = "failed"
    #: Held too long; content destroyed, the sender was told.
    EXPIRED = "expired"

    @property
    def final(self) -> bool:
        return self in (RecipientState.DELIVERED, RecipientState.FAILED, RecipientState.EXPIRED)


class NoticeKind(enum.StrEnum):
    """Events a sender (or anyone a notifier chooses) is told about."""

    QUARANTINED = "quarantined"
    UNDELIVERABLE = "undeliverable"
    #: "E-Mail-Zustellung verzögert": the message is held.
    DELAYED = "delayed"
    #: "E-Mail-Verschlüsselung erfolgreich": delivered protected.
    PROTECTED = "protected"
    #: A classifier asked for the sender to be warned (e.g. content not fit for e-mail).
    WARNING = "warning"
    EXPIRED = "expired"
    #: A system mail about the held copy (an invitation) came back: the address does not exist
    #: (or refuses the mail for good), so the copy ended early.
    BOUNCED = "bounced"
    #: The recipient first opened the message in the postbox (proof of retrieval).
    RETRIEVED = "retrieved"
    #: The message lies unopened in the postbox for the tenant's number of days (the sender may
    #: send a letter instead).
    NOT_RETRIEVED = "not-retrieved"


def _texts(values: Iterable[Text]) -> tuple[Text, ...]:
    return tuple(values)


@attrs.frozen(kw_only=True)
class Notice:
    """Something happened to one recipient's copy of a message that people may need to know."""

    kind: NoticeKind
    tenant: str
    message_id: str
    sender: Address | None
    recipient: Address
    subject: str | None
    reasons: tuple[Text, ...] = attrs.field(converter=_texts)
    #: When the notice was written, and when the message it is about was accepted.
    at: datetime
    received_at: datetime


@attrs.frozen
class HeldCopy:
    """One recipient's held copy of a message: what a system mail (an invitation) is about."""

    message_id: str
    recipient: Address


@attrs.frozen(kw_only=True)
class SystemMail:
    """A mail that siegel or a plugin writes (a notice, an invitation), to be stored and delivered.

    System mails skip classification: the plugin that writes one is responsible for what is in it
    and must put no message content into mail that leaves the authority.

    ``about`` names the held copy the mail concerns (for one recipient: an invitation to choose
    a password). Where the tenant has a ``bounce_address``, the runtime then sends the mail with
    a VERP envelope sender instead of ``mail_from``, so that a bounce ends that copy at once and
    its sender is told (:mod:`siegel.bounces`).
    """

    mail_from: str
    recipients: tuple[str, ...] = attrs.field(converter=_strings)
    raw: bytes = attrs.field(repr=False)
    channel: str = "smtp"
    about: HeldCopy | None = None


@attrs.frozen(kw_only=True)
class AuditEvent:
    """A record of something siegel did. Never carries message bodies or secrets."""

    at: datetime
    kind: str
    tenant: str | None = None
    message_id: str | None = None
    recipient: str | None = None
    detail: Mapping[str, str] = attrs.field(factory=dict, converter=_str_mapping)


def _address(value: Address | str) -> Address:
    return value if isinstance(value, Address) else Address.parse(value)


@attrs.frozen(kw_only=True)
class PostboxTopic:
    """A subject a postbox user may write to the authority about, and the mailbox it goes to.

    Returned by ``siegel_register_postbox_topics(tenant)``; the postbox's "new message" page
    offers each topic of the tenant by its ``label`` and sends the message to ``recipient``.
    """

    #: Stable id (letters, digits, ``.``, ``-``, ``_``), unique per tenant: what the form posts.
    name: str = attrs.field(validator=attrs.validators.matches_re(r"^[A-Za-z0-9][A-Za-z0-9._-]*$"))
    label: Text
    recipient: Address = attrs.field(converter=_address)
    description: Text | None = None
    plugin: str = ""
