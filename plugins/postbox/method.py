"""The protection method ``postbox``: a ``PROTECT`` copy goes into the recipient's postbox.

* A recipient with an account (one that can sign in, whichever plugin made it) gets the copy in
  the postbox at once, with the identity level it needs (:attr:`siegel.RecipientContext.
  required_level`). If the account chose notices, a notice mail without content goes out (neutral
  subject by default, a link to the message and one to the inbox); otherwise nothing leaves, and
  the copy is "delivered" through the channel ``postbox`` that only confirms it.
* Without an account the first copy is held (``hold_days``, 5) and one invitation is sent with
  a single-use registration link (:mod:`siegel.invitations`, the password PDF's mechanism);
  every further copy waits for the same registration, which releases them all.
* Registration (``postbox.register``): the recipient chooses a password (the tenant's rules and
  every enabled plugin's, :meth:`siegel.Accounts.password_problems`) and whether to get notice
  mails. The account starts at level ``mailbox`` (the link proved control of the address); the
  invitation itself asks about notices, so an account made by an invitation has whatever its
  owner ticked there (the box is not ticked in advance: opt-in).
* ``serve = "account"`` makes the method answer "no" for addresses without an account, so that
  a tenant can list it *before* another method (postbox for whoever has one, the password PDF
  for the rest); with ``serve = "everyone"`` (default) listed first it serves every recipient,
  listed after S/MIME it serves whom S/MIME cannot.
"""

from __future__ import annotations

import email.utils
import functools
import json
from datetime import datetime, timedelta

from siegel import (
    Accounts,
    Address,
    Availability,
    DeliveryResult,
    HeldCopy,
    Outgoing,
    Protected,
    RecipientContext,
    Services,
    SystemMail,
    Tenant,
    Text,
    mailtext,
    password_problems,
)
from siegel import Held as HeldResult
from siegel.invitations import LinkInvalid, OneTimeLinks, WaitingCopies

from .mailbox import SLOT, Mailbox, MessageSummary
from .settings import SECTION, PostboxSettings

METHOD = "postbox"
#: The channel of copies that went into the postbox and need no mail: it only confirms them.
CHANNEL = "postbox"
LINKS = "postbox.links"
WAITING = "postbox.waiting"
PACKAGE = "siegel.plugins.postbox"


class Postbox:
    """The postbox of one tenant: the method's work and the registration."""

    def __init__(self, services: Services, tenant: Tenant) -> None:
        self.services = services
        self.tenant = tenant
        self.settings: PostboxSettings = tenant.settings[SECTION]

    # Made on first use: a dry run without a store (``siegel explain``) can still ask can_serve.
    @functools.cached_property
    def accounts(self) -> Accounts:
        return self.services.accounts(self.tenant.id)

    @functools.cached_property
    def links(self) -> OneTimeLinks:
        return OneTimeLinks(self.services.state(LINKS), self.tenant.id)

    @functools.cached_property
    def waiting(self) -> WaitingCopies:
        return WaitingCopies(self.services.state(WAITING), self.tenant.id)

    @property
    def now(self) -> datetime:
        return self.services.clock.now()

    def mailbox(self, address: Address) -> Mailbox:
        return Mailbox(self.services, self.tenant, address)

    def link(self, path: str) -> str:
        return self.services.portal_link(self.tenant.id, path)

    async def has_account(self, address: Address) -> bool:
        account = await self.accounts.get(address)
        return account is not None and account.can_log_in

    # -- the method ---------------------------------------------------------------------------

    async def can_serve(self, ctx: RecipientContext) -> Availability:
        try:
            registered = await self.has_account(ctx.recipient)
        except Exception:  # a dry run without a store: say what would happen in general
            registered = None
        if registered:
            return Availability.yes(Text(de="ins Postfach des Empfängerkontos",
                                         en="into the recipient account's postbox"))
        if self.settings.serve == "account":
            return Availability.no(Text(
                de="kein Empfängerkonto (das Postfach bedient hier nur Konten)",
                en="no recipient account (the postbox serves only accounts here)"))
        if registered is None:
            return Availability.yes(Text(
                de="ins Postfach (ohne Konto beim Erstkontakt zurückgehalten bis zur Registrierung)",
                en="into the postbox (held on first contact until the recipient registers)"))
        return Availability.yes(Text(
            de="ins Postfach, nach der Registrierung (Einladung beim Erstkontakt)",
            en="into the postbox, after registration (invitation on first contact)"))

    async def protect(self, ctx: RecipientContext) -> Protected | HeldResult:
        async with self.waiting.updating(ctx.recipient):
            registered = await self.has_account(ctx.recipient)
            if not registered:
                until, first = await self.waiting.add(ctx.message.id, ctx.recipient,
                                                      timedelta(days=self.settings.hold_days))
        if not registered:
            if first:
                await self._invite(ctx, until)
            return HeldResult(until=until, reason=Text(
                de="Erstkontakt: Die Nachricht wartet, bis der Empfänger sein Postfach eröffnet hat",
                en="first contact: the message waits until the recipient opens a postbox"))
        box = self.mailbox(ctx.recipient)
        sender = str(ctx.message.envelope.mail_from or "")
        summary = await box.deliver(ctx.raw, level=ctx.required_level, source=ctx.message.id,
                                    envelope_sender=sender,
                                    received_at=ctx.message.received_at)
        if await box.notices_wanted():
            outgoing = Outgoing(channel=self.tenant.delivery_channel, mail_from="",
                                recipients=[str(ctx.recipient)],
                                raw=self._notice_mail(ctx.recipient, summary))
        else:
            outgoing = Outgoing(channel=CHANNEL, mail_from=sender, recipients=[str(ctx.recipient)],
                                raw=f"X-Siegel-Postbox: {summary.id}\r\n\r\n".encode())
        return Protected(outgoing=[outgoing], reason=Text(
            de=f"ins Postfach zugestellt (Vertrauensniveau {ctx.required_level.label})",
            en=f"delivered to the postbox (identity level {ctx.required_level.label})"))

    def _languages(self) -> tuple[str, str]:
        return ("de", "en") if self.tenant.language == "de" else ("en", "de")

    def _compose(self, template: str, to: Address, values: dict[str, str]) -> mailtext.Mail:
        sender = self.settings.mail_from or self.tenant.notice_from
        message = mailtext.compose(
            package=PACKAGE, name=template, languages=self._languages(),
            values={"tenant": self.tenant.name, **values},
            sender=email.utils.formataddr((self.tenant.name, sender)), to=str(to),
            override=self.settings.templates)
        message.add("X-Siegel-Mail", f"postbox.{template}")
        return message

    def _notice_mail(self, recipient: Address, summary: MessageSummary) -> bytes:
        message = self._compose("notice", recipient, {
            "message_link": self.link(f"/postbox/messages/{summary.id}"),
            "inbox_link": self.link("/postbox"),
            "settings_link": self.link("/postbox/settings")})
        if self.settings.notice_subject == "original" and summary.subject:
            message.set("Subject", summary.subject)
        return message.to_bytes()

    async def _invite(self, ctx: RecipientContext, until: datetime) -> None:
        token = await self.links.issue("register", ctx.recipient, until - self.now)
        message = self._compose("invitation", ctx.recipient, {
            "register_link": self.link(f"/postbox/register/{token}"),
            "expires": self.tenant.format_time(until, "de"),
            "expires_en": self.tenant.format_time(until, "en")})
        await self.services.send_system_mail(self.tenant.id, SystemMail(
            mail_from="", recipients=[str(ctx.recipient)], raw=message.to_bytes(),
            channel=self.tenant.delivery_channel,
            about=HeldCopy(ctx.message.id, ctx.recipient)))

    async def tell_expiry(self, address: Address, count: int, expires: datetime) -> None:
        """Tell the account that ``count`` of its messages expire at ``expires`` (no content)."""
        message = self._compose("expiry", address, {
            "count": str(count), "inbox_link": self.link("/postbox"),
            "expires": self.tenant.format_time(expires, "de"),
            "expires_en": self.tenant.format_time(expires, "en")})
        await self.services.send_system_mail(self.tenant.id, SystemMail(
            mail_from="", recipients=[str(address)], raw=message.to_bytes(),
            channel=self.tenant.delivery_channel))

    # -- registration ---------------------------------------------------------------------------

    async def invited(self, token: str) -> Address:
        """Whom a registration link is for; :class:`~siegel.invitations.LinkInvalid` if it is
        unknown, used or expired."""
        return Address.load((await self.links.read(token, "register")).recipient)

    async def register(self, token: str, password: str, *,
                       notices: bool) -> tuple[Address, list[Text]]:
        """Open the postbox: set the password and the notice choice, release what waited.
        Returns the recipient and the problems with the password (empty: done)."""
        recipient = await self.invited(token)
        problems = password_problems(password, recipient, self.settings.minimum_password_length)
        problems += [p for p in await self.accounts.password_problems(recipient, password)
                     if p not in problems]
        if problems:
            return recipient, problems
        await self.links.consume(token, "register")
        await self.accounts.set_password(
            recipient, password, slot=(SLOT, json.dumps({"notices": notices}).encode()))
        await self.waiting.release(recipient, self.services)
        return recipient, []


async def confirm(outgoing: Outgoing, tenant: Tenant) -> DeliveryResult:
    """The channel ``postbox``: the copy is in the postbox already (the method put it there);
    this only confirms it, so that the sender's notice says "delivered"."""
    marker = outgoing.raw.split(b"\r\n", 1)[0].decode("ascii", "replace")
    if not marker.startswith("X-Siegel-Postbox: "):
        return DeliveryResult.permanent_failure("not a postbox receipt: the postbox channel "
                                                "only confirms copies the postbox method stored")
    return DeliveryResult.delivered(f"in the postbox ({marker.split(': ', 1)[1]})")


__all__ = ["CHANNEL", "METHOD", "LinkInvalid", "Postbox", "confirm"]
