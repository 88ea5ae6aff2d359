"""The postbox of one account: :class:`Mailbox`, what the protection method delivers into and what
the pages (``plugins/postbox/portal.py``) read.

A :class:`Mailbox` is made for one tenant and one address and reads and writes only records under
that account's prefix (:mod:`.records`): an id that belongs to another account is simply not
found, so no page can show one account another's messages, whatever id it is given.

Every message carries the identity level needed to read it (:attr:`MessageSummary.level`, from
:attr:`siegel.RecipientContext.required_level`); :meth:`Mailbox.get` refuses the content to an
account below it (:class:`LevelTooLow`), the summary stays visible. The first
:meth:`Mailbox.mark_read` is the retrieval: an audit event ``postbox.retrieved`` with the time
(the proof of retrieval) and a :attr:`~siegel.NoticeKind.RETRIEVED` notice to the sender.
:meth:`Mailbox.purge` deletes the record that holds the message's key first: from then on the
content is unrecoverable, even where deleting its pieces is cut short.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import attrs

from siegel import (
    Address,
    AuditEvent,
    IdentityLevel,
    Notice,
    NoticeKind,
    Services,
    StateConflict,
    Tenant,
    Text,
    mime,
    parse_email,
)

from . import records
from .records import CHUNK_BYTES, CONTENT, DUE, MESSAGES, UNREAD, ContentGone
from .settings import SECTION, PostboxSettings

#: This plugin's slot in a recipient's account: ``{"notices": bool}``.
SLOT = "postbox"


class MessageMissing(LookupError):
    """No message with this id in this account's postbox (or in the folder asked for)."""


class LevelTooLow(PermissionError):
    """The account's identity level is below what the message needs to be read."""

    def __init__(self, needed: IdentityLevel, has: IdentityLevel) -> None:
        super().__init__(f"the message needs level {needed.label}, the account has {has.label}")
        self.needed = needed
        self.has = has


@attrs.frozen(kw_only=True)
class Attachment:
    """An attachment as stored: its SHA-512 is taken when the message is delivered."""

    index: int
    filename: str
    content_type: str
    size: int
    sha512: str


@attrs.frozen(kw_only=True)
class Threading:
    """What a reply needs to thread: the message's ids and where a reply goes."""

    message_id: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    #: The address a reply is sent to (Reply-To, else From, else the envelope sender).
    reply_to: str | None = None


@attrs.frozen(kw_only=True)
class MessageSummary:
    """A message as the inbox lists it (no body)."""

    id: str
    folder: str
    subject: str
    sender: str
    received_at: datetime
    level: IdentityLevel
    size: int
    attachments: tuple[Attachment, ...]
    threading: Threading
    expires_at: datetime | None
    read_at: datetime | None = None
    deleted_at: datetime | None = None
    #: The stored message this was delivered from (for notices to its sender).
    source: str | None = None

    @property
    def unread(self) -> bool:
        return self.read_at is None


@attrs.frozen(kw_only=True)
class StoredMessage:
    summary: MessageSummary
    text: str
    #: The HTML body as it came; show it only sanitised.
    html: str | None


@attrs.frozen(kw_only=True)
class InboxPage:
    messages: tuple[MessageSummary, ...]
    unread: int
    #: Pass as ``after`` for the next (older) page; ``None``: this is the last page.
    next_after: str | None


@attrs.frozen
class _Record:
    summary: MessageSummary
    key: bytes = attrs.field(repr=False)
    extra: dict[str, Any] = attrs.field(factory=dict)


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _encode(record: _Record) -> bytes:
    s = record.summary
    return json.dumps({
        "id": s.id, "subject": s.subject, "sender": s.sender,
        "received_at": s.received_at.isoformat(), "level": s.level.label, "size": s.size,
        "attachments": [attrs.asdict(a) for a in s.attachments],
        "threading": {**attrs.asdict(s.threading), "references": list(s.threading.references)},
        "expires_at": _iso(s.expires_at), "read_at": _iso(s.read_at),
        "deleted_at": _iso(s.deleted_at), "source": s.source,
        "key": base64.b64encode(record.key).decode(), **record.extra}).encode()


def _decode(folder: str, raw: bytes) -> _Record:
    data = json.loads(raw)
    threading = data["threading"]
    summary = MessageSummary(
        id=data["id"], folder=folder, subject=data["subject"], sender=data["sender"],
        received_at=datetime.fromisoformat(data["received_at"]),
        level=IdentityLevel.of(data["level"]), size=data["size"],
        attachments=tuple(Attachment(**a) for a in data["attachments"]),
        threading=Threading(**{**threading, "references": tuple(threading["references"])}),
        expires_at=_time(data["expires_at"]), read_at=_time(data["read_at"]),
        deleted_at=_time(data["deleted_at"]), source=data.get("source"))
    extra = {k: v for k, v in data.items() if k in ("envelope_sender", "original_subject")}
    return _Record(summary, base64.b64decode(data["key"]), extra)


def _parts(parsed: EmailMessage) -> tuple[str, str | None, list[EmailMessage]]:
    text_part = parsed.get_body(preferencelist=("plain",))
    html_part = parsed.get_body(preferencelist=("html",))
    chosen = [p for p in (text_part, html_part) if p is not None]
    files = [p for p in parsed.walk()
             if not p.is_multipart() and not any(p is c for c in chosen)]
    text = str(text_part.get_content()) if isinstance(text_part, EmailMessage) else ""
    html = str(html_part.get_content()) if isinstance(html_part, EmailMessage) else None
    if not text and html is not None:
        text = mime.read_message(parsed).text
    return text, html, [p for p in files if isinstance(p, EmailMessage)]


def _reply_address(parsed: EmailMessage, envelope_sender: str | None) -> str | None:
    for name in ("reply-to", "from"):
        value = parsed.get(name)
        addresses = getattr(value, "addresses", ()) if value is not None else ()
        if addresses and addresses[0].addr_spec:
            return str(addresses[0].addr_spec)
    return envelope_sender or None


class Mailbox:
    """The postbox of ``address`` in ``tenant``."""

    def __init__(self, services: Services, tenant: Tenant, address: Address) -> None:
        self.services = services
        self.tenant = tenant
        self.address = address
        self.settings: PostboxSettings = tenant.settings[SECTION]
        self.prefix = records.account_prefix(tenant.id, address)
        self.messages = services.state(MESSAGES)
        self.unread_marks = services.state(UNREAD)
        self.content = services.state(CONTENT)
        self.due = services.state(DUE)

    @property
    def now(self) -> datetime:
        return self.services.clock.now()

    # -- delivering -----------------------------------------------------------------------------

    async def deliver(self, raw: bytes, *, level: IdentityLevel, source: str | None = None,
                      envelope_sender: str | None = None,
                      received_at: datetime | None = None) -> MessageSummary:
        """Store a message (RFC 5322 bytes) in the inbox, unread; returns it. ``source`` (the
        stored message it is a copy of) makes delivery idempotent: the same source delivered
        again returns the message delivered first."""
        received = received_at or self.now
        message_id = records.new_id(received, f"{self.prefix}{source}" if source else None)
        if source is not None:
            for folder in records.FOLDERS:
                found = await self.messages.get(self._key(folder, message_id))
                if found is not None:
                    return _decode(folder, found.value).summary
        parsed = parse_email(raw)
        text, html, files = _parts(parsed)
        key = records.new_key()
        attachments = []
        for index, part in enumerate(files):
            data = part.get_payload(decode=True)
            payload = data if isinstance(data, bytes) else b""
            attachments.append(Attachment(
                index=index, filename=part.get_filename() or f"anhang-{index + 1}",
                content_type=part.get_content_type(), size=len(payload),
                sha512=hashlib.sha512(payload).hexdigest()))
            await self._write_pieces(key, f"{message_id}/a/{index:03d}", payload)
        await self._write(key, f"{message_id}/body",
                          json.dumps({"text": text, "html": html}).encode())
        days = self.settings.retention_days
        expires = self.now + timedelta(days=days) if days else None
        refs = str(parsed.get("references", "") or "").split()
        summary = MessageSummary(
            id=message_id, folder="inbox", subject=mime.subject_of(parsed),
            sender=str(parsed.get("from", "") or envelope_sender or ""), received_at=received,
            level=level, size=len(raw), attachments=tuple(attachments),
            threading=Threading(
                message_id=str(parsed.get("message-id", "") or "") or None,
                in_reply_to=str(parsed.get("in-reply-to", "") or "") or None,
                references=tuple(refs), reply_to=_reply_address(parsed, envelope_sender)),
            expires_at=expires, source=source)
        record = _Record(summary, key, {"envelope_sender": envelope_sender or ""})
        try:
            await self.messages.put(self._key("inbox", message_id), _encode(record),
                                    expect_version=0)
        except StateConflict:  # delivered meanwhile by another worker: that one stands
            found = await self.messages.get(self._key("inbox", message_id))
            assert found is not None
            return _decode("inbox", found.value).summary
        await self.unread_marks.put(self.prefix + message_id, b"")
        if expires is not None:
            await self._plan("expire", expires, message_id)
            warn = expires - timedelta(days=self.settings.expiry_notice_days)
            if warn > self.now:
                await self._plan("warn", warn, message_id)
        if envelope_sender and self.settings.not_retrieved_days:
            await self._plan("unretrieved",
                             self.now + timedelta(days=self.settings.not_retrieved_days),
                             message_id)
        return summary

    async def _write(self, key: bytes, where: str, plain: bytes) -> None:
        name = self.prefix + where
        await self.content.put(name, records.seal(key, name, plain))

    async def _write_pieces(self, key: bytes, where: str, data: bytes) -> None:
        view = memoryview(data)
        for number, start in enumerate(range(0, max(len(view), 1), CHUNK_BYTES)):
            await self._write(key, f"{where}/{number:05d}", bytes(view[start:start + CHUNK_BYTES]))

    async def _read(self, key: bytes, where: str) -> bytes:
        name = self.prefix + where
        record = await self.content.get(name)
        if record is None:
            raise ContentGone(f"{name}: missing")
        return records.unseal(key, name, record.value)

    def _key(self, folder: str, message_id: str) -> str:
        return f"{self.prefix}{folder}/{message_id}"

    def _due_key(self, kind: str, when: datetime, message_id: str) -> str:
        return (f"{self.tenant.id}/{kind}/{records.stamp(when)}/"
                f"{records.account_part(self.address)}/{message_id}")

    async def _plan(self, kind: str, when: datetime, message_id: str) -> None:
        await self.due.put(self._due_key(kind, when, message_id),
                           json.dumps({"address": str(self.address), "id": message_id}).encode())

    # -- reading -------------------------------------------------------------------------------

    async def page(self, folder: str = "inbox", *, limit: int = 20,
                   after: str | None = None) -> InboxPage:
        """Newest first, ``limit`` at a time; ``after`` is the previous page's ``next_after``."""
        if folder not in records.FOLDERS:
            raise ValueError(f"no folder {folder!r}")
        prefix = f"{self.prefix}{folder}/"
        start = prefix + after if after is not None and records.valid_id(after) else None
        found = await self.messages.page(prefix, limit=limit + 1, after=start, descending=True)
        summaries = tuple(_decode(folder, r.value).summary for r in found[:limit])
        more = len(found) > limit
        return InboxPage(messages=summaries, unread=await self.unread_count(),
                         next_after=summaries[-1].id if more and summaries else None)

    async def unread_count(self) -> int:
        return await self.unread_marks.count(self.prefix)

    async def _find(self, message_id: str, folders: Sequence[str] = records.FOLDERS) -> _Record:
        if records.valid_id(message_id):
            for folder in folders:
                found = await self.messages.get(self._key(folder, message_id))
                if found is not None:
                    return _decode(folder, found.value)
        raise MessageMissing(f"no message {message_id!r} in this postbox")

    async def summary(self, message_id: str) -> MessageSummary:
        """The message's metadata, whatever level the account has."""
        return (await self._find(message_id)).summary

    async def level(self) -> IdentityLevel:
        account = await self.services.accounts(self.tenant.id).get(self.address)
        return account.level if account is not None else IdentityLevel.MAILBOX

    async def _readable(self, message_id: str) -> _Record:
        record = await self._find(message_id)
        has = await self.level()
        if has < record.summary.level:
            raise LevelTooLow(record.summary.level, has)
        return record

    async def get(self, message_id: str) -> StoredMessage:
        """The message with its body; :class:`LevelTooLow` if the account may not read it yet.
        Reading does not mark it read: the page calls :meth:`mark_read`."""
        record = await self._readable(message_id)
        body = json.loads(await self._read(record.key, f"{message_id}/body"))
        return StoredMessage(summary=record.summary, text=body["text"], html=body["html"])

    async def attachment(self, message_id: str, index: int) -> tuple[Attachment, bytes]:
        """An attachment's description and bytes (checked against its SHA-512)."""
        record = await self._readable(message_id)
        info = next((a for a in record.summary.attachments if a.index == index), None)
        if info is None:
            raise MessageMissing(f"message {message_id!r} has no attachment {index}")
        prefix = f"{self.prefix}{message_id}/a/{index:03d}/"
        pieces = []
        after: str | None = None
        while True:
            batch = await self.content.page(prefix, limit=8, after=after)
            if not batch:
                break
            pieces += [records.unseal(record.key, r.key, r.value) for r in batch]
            after = batch[-1].key
        data = b"".join(pieces)
        if hashlib.sha512(data).hexdigest() != info.sha512:
            raise ContentGone(f"{prefix}: the attachment does not match its SHA-512")
        return info, data

    # -- changing ------------------------------------------------------------------------------

    async def _rewrite(self, record: _Record, folder: str) -> None:
        """Write ``record`` under ``folder`` and remove it from the other folder (new first:
        a crash in between leaves the message in both, never in none)."""
        summary = attrs.evolve(record.summary, folder=folder)
        await self.messages.put(self._key(folder, summary.id), _encode(
            attrs.evolve(record, summary=summary)))
        if record.summary.folder != folder:
            await self.messages.delete(self._key(record.summary.folder, summary.id))

    async def mark_read(self, message_id: str) -> datetime:
        """Mark the message read; the first time is the retrieval (audit event and sender
        notice). Returns when it was first read. Refused below the message's level."""
        record = await self._readable(message_id)
        if record.summary.read_at is not None:
            return record.summary.read_at
        now = self.now
        summary = attrs.evolve(record.summary, read_at=now)
        await self.messages.put(self._key(summary.folder, summary.id), _encode(
            attrs.evolve(record, summary=summary)))
        await self.unread_marks.delete(self.prefix + message_id)
        await self._tell_sender(record, NoticeKind.RETRIEVED, now, Text(
            de=f"Abgerufen am {self.tenant.format_time(now, 'de')}",
            en=f"Retrieved on {self.tenant.format_time(now, 'en')}"))
        return now

    async def _tell_sender(self, record: _Record, kind: NoticeKind, now: datetime,
                           reason: Text) -> None:
        summary = record.summary
        sender = record.extra.get("envelope_sender") or ""
        event = AuditEvent(at=now, kind=f"postbox.{kind.value}", tenant=self.tenant.id,
                           message_id=summary.source, recipient=str(self.address),
                           detail={"postbox_id": summary.id, "at": now.isoformat()})
        notices = []
        if sender and summary.source:
            notices.append(Notice(kind=kind, tenant=self.tenant.id, message_id=summary.source,
                                  sender=Address.load(sender), recipient=self.address,
                                  subject=summary.subject, reasons=[reason], at=now,
                                  received_at=summary.received_at))
        await self.services.report(self.tenant.id, notices=notices, events=[event])

    async def move_to_bin(self, message_id: str) -> None:
        """Move the message to the bin (erased ``bin_days`` later); the unread count is the
        inbox's, so its unread mark goes."""
        record = await self._find(message_id, ("inbox",))
        purge_at = self.now + timedelta(days=self.settings.bin_days)
        await self._rewrite(attrs.evolve(record, summary=attrs.evolve(
            record.summary, deleted_at=self.now)), "bin")
        await self.unread_marks.delete(self.prefix + message_id)
        await self._plan("purge", purge_at, message_id)

    async def restore(self, message_id: str) -> None:
        record = await self._find(message_id, ("bin",))
        await self._rewrite(attrs.evolve(record, summary=attrs.evolve(
            record.summary, deleted_at=None)), "inbox")
        if record.summary.unread:
            await self.unread_marks.put(self.prefix + message_id, b"")

    def bin_days_over(self, summary: MessageSummary) -> bool:
        """Whether a message in the bin has lain there ``bin_days`` (since it was last moved
        there: one restored and deleted again starts anew)."""
        return summary.folder == "bin" and summary.deleted_at is not None and (
            summary.deleted_at + timedelta(days=self.settings.bin_days) <= self.now)

    async def purge(self, message_id: str, *, why: str = "purged") -> bool:
        """Erase the message: its key first (the content is unrecoverable from then on), then
        its pieces and marks. False if it was not there."""
        try:
            record = await self._find(message_id)
        except MessageMissing:
            return False
        for folder in records.FOLDERS:
            await self.messages.delete(self._key(folder, message_id))
        await self.unread_marks.delete(self.prefix + message_id)
        prefix = f"{self.prefix}{message_id}/"
        while batch := await self.content.page(prefix, limit=64):
            for piece in batch:
                await self.content.delete(piece.key)
        await self.services.report(self.tenant.id, events=[AuditEvent(
            at=self.now, kind=f"postbox.{why}", tenant=self.tenant.id,
            message_id=record.summary.source, recipient=str(self.address),
            detail={"postbox_id": message_id})])
        return True

    async def tell_not_retrieved(self, message_id: str) -> bool:
        """The sender's notice that the message lies unopened (maintenance calls it when the
        tenant's days have passed). False if it was opened or is gone."""
        try:
            record = await self._find(message_id)
        except MessageMissing:
            return False
        if record.summary.read_at is not None:
            return False
        days = self.settings.not_retrieved_days
        await self._tell_sender(record, NoticeKind.NOT_RETRIEVED, self.now, Text(
            de=f"Seit {days:g} Tagen nicht abgerufen", en=f"not retrieved for {days:g} days"))
        return True

    # -- the account's choices ------------------------------------------------------------------

    async def notices_wanted(self) -> bool:
        """Whether the account gets a notice mail (without content) for new messages: its own
        choice, else the tenant's ``notices_default`` (off: seed 003 makes it opt-in)."""
        account = await self.services.accounts(self.tenant.id).get(self.address)
        slot = account.slot(SLOT) if account is not None else None
        if slot is None:
            return self.settings.notices_default
        return bool(json.loads(slot).get("notices", False))

    async def set_notices(self, wanted: bool) -> None:
        await self.services.accounts(self.tenant.id).put_slot(
            self.address, SLOT, json.dumps({"notices": wanted}).encode())
