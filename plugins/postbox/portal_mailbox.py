"""What the postbox pages need of the mailbox, for one signed-in account of one tenant.

:class:`MailboxPages` is the pages' only way to the messages: everything it returns comes from
the account's own :class:`~.mailbox.Mailbox`, so an id of another account's message is simply
not found (``None`` / ``False``, which the pages answer with the same 404 as an unknown id). It
also resolves what the pages show around the messages: times in the tenant's zone, sizes, the
reply address (only an address of the tenant's own network), the topics.
"""

from __future__ import annotations

from datetime import datetime

from babel.numbers import format_decimal

from siegel import Account, Address, InvalidAddress, PostboxTopic, internal_match
from siegel.portal import PortalContext, UploadLimits

from .mailbox import Attachment, LevelTooLow, Mailbox, MessageMissing, MessageSummary, StoredMessage
from .settings import SECTION, PostboxSettings


def format_size(size: int, language: str) -> str:
    """``size`` bytes for people: "1,5 MB" / "1.5 MB", "820 Bytes"."""
    locale = "de_DE" if language == "de" else "en_GB"
    for unit, factor in (("MB", 1024 * 1024), ("KB", 1024)):
        if size >= factor:
            return f"{format_decimal(round(size / factor, 1), locale=locale)} {unit}"
    return f"{size} Bytes" if language == "de" else f"{size} bytes"


class MailboxPages:
    def __init__(self, portal: PortalContext, account: Account) -> None:
        self.portal = portal
        self.account = account
        self.settings: PostboxSettings = portal.tenant.settings[SECTION]
        # The runtime's state, not the portal's read-only view: the message page's first view
        # marks the message read (see portal.py for why that GET may change state).
        self.mailbox = Mailbox(portal.services, portal.tenant, Address.parse(account.address))

    @property
    def upload_limits(self) -> UploadLimits:
        return UploadLimits(max_files=self.settings.upload_max_files,
                            max_bytes=self.settings.upload_max_kb * 1024,
                            types=self.settings.upload_types)

    @property
    def can_write_new(self) -> bool:
        return self.settings.new_messages and bool(self.topics())

    def when(self, moment: datetime | None) -> str:
        return self.portal.tenant.format_time(moment, self.portal.language) if moment else ""

    def topics(self) -> list[PostboxTopic]:
        return self.portal.registry.postbox_topics(self.portal.tenant)

    # -- reading -------------------------------------------------------------------------------

    async def page(self, folder: str, *, limit: int,
                   after: str | None) -> tuple[list[MessageSummary], str | None]:
        found = await self.mailbox.page(folder, limit=limit, after=after)
        return list(found.messages), found.next_after

    async def count(self, folder: str) -> int:
        """How many messages ``folder`` holds (counted on the key index, like the page)."""
        return await self.mailbox.messages.count(f"{self.mailbox.prefix}{folder}/")

    async def unread(self) -> int:
        return await self.mailbox.unread_count()

    async def summary(self, message_id: str) -> MessageSummary | None:
        try:
            return await self.mailbox.summary(message_id)
        except MessageMissing:
            return None

    async def get(self, message_id: str) -> StoredMessage | LevelTooLow | None:
        """The message; :class:`LevelTooLow` (returned, not raised) if the account may not read
        it yet; ``None`` if this account has no such message."""
        try:
            return await self.mailbox.get(message_id)
        except MessageMissing:
            return None
        except LevelTooLow as too_low:
            return too_low

    async def attachment(self, message_id: str,
                         index: int) -> tuple[Attachment, bytes] | LevelTooLow | None:
        try:
            return await self.mailbox.attachment(message_id, index)
        except MessageMissing:
            return None
        except LevelTooLow as too_low:
            return too_low

    async def mark_read(self, message_id: str) -> None:
        await self.mailbox.mark_read(message_id)

    def reply_address(self, summary: MessageSummary) -> Address | None:
        """Where a reply goes: the message's reply address, only inside the tenant's network
        (a reply is the citizen's mail through the authority's gateway, not an open relay)."""
        value = summary.threading.reply_to
        if not value:
            return None
        try:
            address = Address.parse(value)
        except InvalidAddress:
            return None
        if internal_match(self.portal.tenant.internal, address) is None:
            return None
        return address

    # -- changing ------------------------------------------------------------------------------

    async def bin_action(self, action: str, message_id: str) -> bool:
        """Move to the bin ("delete"), "restore" or "purge"; False if there is no such message
        in the folder the action needs."""
        try:
            if action == "delete":
                await self.mailbox.move_to_bin(message_id)
            elif action == "restore":
                await self.mailbox.restore(message_id)
            else:
                summary = await self.mailbox.summary(message_id)
                if summary.folder != "bin":
                    return False
                return await self.mailbox.purge(message_id)
        except MessageMissing:
            return False
        return True

    async def notices(self) -> bool:
        return await self.mailbox.notices_wanted()

    async def set_notices(self, wanted: bool) -> None:
        await self.mailbox.set_notices(wanted)
