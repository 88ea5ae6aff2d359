"""The district's password-PDF workflow (seed 000_1253fbd76cd12a7e.txt, section 2).

* A known recipient (who has chosen a password) gets the message at once as an AES-256 PDF inside a
  carrier mail with a reply link and a password link.
* On first contact the message is held (encrypted in the store) and the recipient gets one
  invitation with a single-use registration link, valid ``hold_days`` (5); every further message
  for them waits for the same registration. Registering releases all of them.
* The password is never stored: only the R6 ``/U`` entry and the key derived from the password
  (``ue_key``), in this plugin's slot of the recipient's shared account (:mod:`siegel.accounts`),
  and the account's Argon2id hash for the portal login, encrypted at rest. Tokens are 256-bit
  random values, stored only as their SHA-256, single-purpose and expiring.
* A recipient who logged in to the portal can change the password there; that works exactly as a
  reset by mail (new key and hash, a notice to the recipient, held messages released).
* Accounts and held messages are keyed by :attr:`siegel.Address.key`: ``ANNA@example.org`` and
  ``anna@example.org`` are one recipient (one invitation, one password, one login).
* Upgrades: the first time a tenant's accounts are used (:meth:`Workflow.upgrade_keys`), records
  an older siegel wrote under the address as spelt are moved to that key (where two spellings had
  two accounts, the password set last stays and the held messages of both are kept), and the
  plugin's own account records (``password_pdf.accounts``) are moved onto the shared accounts:
  the new record is written first, then the old one removed, and reading looks at the new one and
  then the old one, so that a crash in between leaves a usable account and no password is lost.
"""

from __future__ import annotations

import email.utils
import functools
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import attrs

from siegel import (
    Account,
    Address,
    ConfigPath,
    Held,
    HeldCopy,
    Outgoing,
    PluginState,
    Protected,
    RecipientContext,
    RetryLater,
    Services,
    SettingError,
    StateConflict,
    StateRecord,
    SystemMail,
    Tenant,
    Text,
    internal_match,
    mailtext,
)
from siegel import password_problems as core_password_problems
from siegel.invitations import LinkRecord, OneTimeLinks, WaitingCopies
from siegel.settings import not_negative, positive

from . import render_pool
from .accounts import (
    KEYS_UPGRADED,
    SLOT,
    PortalAccount,
    Purpose,
    TokenInvalid,
    TokenRecord,
    account_key,
    encode_key,
    merge_accounts,
    merge_pending,
    pdf_key,
    upgraded_key,
)
from .accounts import Account as LegacyAccount
from .encrypt import PasswordRejected, RecipientKey, derive_recipient_key
from .render import Letterhead
from .signing import PdfSigning, SigningKeyInvalid

log = logging.getLogger(__name__)

SECTION = "password_pdf"
METHOD = "password_pdf"
#: Where siegel kept this plugin's account records before accounts moved into the core; read only
#: to move them.
ACCOUNTS = "password_pdf.accounts"
PENDING = "password_pdf.pending"
TOKENS = "password_pdf.tokens"


def _read(path: ConfigPath, setting: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SettingError(setting, f"{path}: cannot read: {exc.strerror or exc}") from None


def _png(_instance: object, attribute: attrs.Attribute[Any], value: ConfigPath | None) -> None:
    if value is None:
        return
    path = Path(value)
    if not path.is_file():
        raise SettingError(attribute.name, f"{value} is not a file")
    if not path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n"):
        raise SettingError(attribute.name, f"{value} is not a PNG image")


@attrs.frozen(kw_only=True)
class PasswordPdfSettings:
    #: How long a first-contact message waits for the recipient's password (seed: 5 days).
    hold_days: float = attrs.field(default=5.0, validator=positive)
    #: "neutral": the carrier mail's subject says nothing about the content (subjects can carry
    #: personal data); "original": it keeps the sender's subject.
    carrier_subject: Literal["neutral", "original"] = "neutral"
    minimum_password_length: int = attrs.field(default=12, validator=positive)
    reset_link_minutes: float = attrs.field(default=60.0, validator=positive)
    reply_link_days: float = attrs.field(default=30.0, validator=positive)
    #: Letterhead of the PDF: lines under the tenant's name, and an optional PNG logo.
    letterhead_lines: tuple[str, ...] = ()
    logo: ConfigPath | None = attrs.field(default=None, validator=_png)
    #: Sender of invitations and password mails; default: the tenant's notice address.
    mail_from: str | None = None
    templates: ConfigPath | None = None
    #: Worker processes that render PDFs beside the gateway's event loop; 0 renders on a thread
    #: of the gateway process (one PDF at a time).
    render_processes: int = attrs.field(default=1, validator=not_negative)
    #: Messages larger than this (MB) are rendered on the gateway's thread, not sent to a worker:
    #: a worker would hold them several times over.
    render_in_gateway_above_mb: float = attrs.field(default=4.0, validator=positive)
    #: Sign every PDF for the tenant (PAdES B-B): the certificate (PEM, its chain after it), the
    #: private key (PEM, RSA or EC) and, if the key is encrypted, a file with its password.
    signing_certificate: ConfigPath | None = None
    signing_key: ConfigPath | None = None
    signing_key_password_file: ConfigPath | None = None
    _signing: PdfSigning | None = attrs.field(init=False, repr=False, eq=False, default=None)
    _logo_png: bytes | None = attrs.field(init=False, repr=False, eq=False, default=None)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_signing", self._load_signing())
        if self.logo is not None:  # read once, not for every PDF
            object.__setattr__(self, "_logo_png", _read(self.logo, "logo"))

    def _load_signing(self) -> PdfSigning | None:
        if self.signing_certificate is None and self.signing_key is None:
            if self.signing_key_password_file is not None:
                raise SettingError("signing_key_password_file", "has no effect without signing_key")
            return None
        if self.signing_certificate is None or self.signing_key is None:
            raise SettingError("signing_certificate",
                               "signing_certificate and signing_key go together")
        password = (_read(self.signing_key_password_file, "signing_key_password_file").strip()
                    if self.signing_key_password_file else None)
        try:
            return PdfSigning.load(_read(self.signing_certificate, "signing_certificate"),
                                   _read(self.signing_key, "signing_key"), password)
        except SigningKeyInvalid as exc:
            raise SettingError(exc.setting, str(exc)) from None

    @property
    def signing(self) -> PdfSigning | None:
        """The tenant's PDF signing key and certificate, if configured."""
        return self._signing

    @property
    def logo_png(self) -> bytes | None:
        """The letterhead's logo, as read when the config was loaded."""
        return self._logo_png


def password_problems(password: str, recipient: Address, minimum_length: int) -> list[Text]:
    """What is wrong with a new password: the accounts' rules (:func:`siegel.password_problems`)
    and what an R6 PDF password cannot be. Empty when it is acceptable."""
    problems = core_password_problems(password, recipient, minimum_length)
    if not problems:
        try:
            derive_recipient_key(password)
        except PasswordRejected as exc:
            problems.append(Text(de=f"Das Passwort kann nicht verwendet werden: {exc}",
                                 en=f"The password cannot be used: {exc}"))
    return problems


class Workflow:
    """The password-PDF workflow of one tenant, over the gateway's services."""

    def __init__(self, services: Services, tenant: Tenant) -> None:
        self.services = services
        self.tenant = tenant
        self.settings: PasswordPdfSettings = tenant.settings[SECTION]
        self.accounts = services.accounts(tenant.id)
        self.legacy: PluginState = services.state(ACCOUNTS)
        self.pending: PluginState = services.state(PENDING)
        self.tokens: PluginState = services.state(TOKENS)
        self.links = OneTimeLinks(self.tokens, tenant.id)
        self.waiting = WaitingCopies(self.pending, tenant.id)

    @property
    def now(self) -> datetime:
        return self.services.clock.now()

    # -- links and tokens ---------------------------------------------------------------------

    def link(self, path: str) -> str:
        return self.services.portal_link(self.tenant.id, path)

    async def issue_token(self, purpose: Purpose, recipient: Address, ttl: timedelta,
                          **extra: str) -> str:
        return await self.links.issue(purpose, recipient, ttl, **extra)

    @staticmethod
    def _token_record(link: LinkRecord) -> TokenRecord:
        return TokenRecord(purpose=link.purpose, tenant=link.tenant,  # type: ignore[arg-type]
                           recipient=link.recipient, created_at=link.created_at,
                           version=link.version, key=link.key, **link.extra)

    async def read_token(self, token: str, purpose: Purpose) -> TokenRecord:
        return self._token_record(await self.links.read(token, purpose))

    async def consume_token(self, token: str, purpose: Purpose) -> TokenRecord:
        """Read and delete a single-use token; a second use fails."""
        return self._token_record(await self.links.consume(token, purpose))

    # -- the protection method ------------------------------------------------------------------

    async def upgrade_keys(self) -> None:
        """Bring the tenant's records up to date: keys written under an address as spelt (before
        addresses were case-insensitive) move to :func:`account_key`, and this plugin's own
        account records move onto the shared accounts. A dry run, which may not write, leaves
        them and reads them through :meth:`_account`."""
        try:
            await self._upgrade_case()
            await self._move_legacy_accounts()
        except PermissionError:  # a dry run's read-only state
            return
        except StateConflict:  # another instance is moving the same records: its result stands
            return

    async def _upgrade_case(self) -> None:
        marker = f"{self.tenant.id}/{KEYS_UPGRADED}"
        if await self.pending.get(marker) is not None:
            return
        if await self.legacy.get(marker) is None:
            await self._move_records(self.legacy, merge_accounts)
            await self._move_records(self.pending, merge_pending)
        await self.pending.put(marker, b"1")

    async def _move_legacy_accounts(self) -> None:
        prefix = f"{self.tenant.id}/"
        for record in await self.legacy.scan(prefix):
            spelt = record.key.removeprefix(prefix)
            if upgraded_key(self.tenant.id, record.key) is None and "@" in spelt:
                continue  # names no address siegel accepts now: no mail can reach it; left as is
            if "@" in spelt:
                recipient = Address.load(spelt)
                legacy = LegacyAccount.decode(record.value)
                # New first, then remove the old: a crash in between leaves both readable.
                await self.accounts.update(recipient, functools.partial(
                    self._moved, recipient, legacy))
            await self.legacy.delete(record.key)

    def _moved(self, recipient: Address, legacy: LegacyAccount,
               current: Account | None) -> Account:
        if current is not None and current.slot(SLOT) is not None:
            return current  # moved before (by another instance, or before a crash)
        return legacy.shared(self.tenant.id, recipient, current)

    async def _move_records(self, state: PluginState,
                            merge: Callable[[list[tuple[str, bytes]]], bytes]) -> None:
        prefix = f"{self.tenant.id}/"
        moves: dict[str, list[StateRecord]] = {}
        for record in await state.scan(prefix):
            new_key = upgraded_key(self.tenant.id, record.key)
            if new_key is not None and new_key != record.key:
                moves.setdefault(new_key, []).append(record)
        for new_key, old in moves.items():
            current = await state.get(new_key)
            records = [*([current] if current is not None else []), *old]
            ends = [r.expires_at for r in records]
            ttl = None if None in ends else max(e for e in ends if e is not None) - self.now
            merged = merge([(r.key.removeprefix(prefix), r.value) for r in records])
            await state.put(new_key, merged, ttl=ttl,
                            expect_version=current.version if current is not None else 0)
            for record in old:
                await state.delete(record.key)

    async def _account(self, recipient: Address) -> Account | None:
        """The recipient's shared account, with the PDF key material of a record not moved yet
        (a dry run, or a crash during the move) put in, without writing."""
        await self.upgrade_keys()
        account = await self.accounts.get(recipient)
        if account is not None and account.slot(SLOT) is not None:
            return account
        legacy = await self._legacy_account(recipient)
        if legacy is None:
            return account
        return self._moved(recipient, LegacyAccount.decode(legacy.value), account)

    async def _legacy_account(self, recipient: Address) -> StateRecord | None:
        """The recipient's record in ``password_pdf.accounts``, whatever case its address was
        written in."""
        wanted = account_key(self.tenant.id, recipient)
        record = await self.legacy.get(wanted)
        if record is not None:
            return record
        found = [r for r in await self.legacy.scan(f"{self.tenant.id}/")
                 if upgraded_key(self.tenant.id, r.key) == wanted]
        return max(found, key=lambda r: LegacyAccount.decode(r.value).set_at, default=None)

    async def recipient_key(self, recipient: Address) -> RecipientKey | None:
        return pdf_key(await self._account(recipient))

    async def protect(self, ctx: RecipientContext) -> Protected | Held | RetryLater:
        key = await self.recipient_key(ctx.recipient)
        if key is None:
            held = await self._hold_for_registration(ctx)
            if isinstance(held, datetime):
                return Held(reason=Text(
                    de="Erstkontakt: Die Nachricht wartet, bis der Empfänger ein Passwort "
                    "festgelegt hat",
                    en="first contact: the message waits until the recipient has chosen a password"),
                    until=held)
            key = held  # the recipient registered meanwhile
        settings = self.settings
        # Rewriters change headers only, so the received size is the copy's size.
        try:
            pdf = await render_pool.RENDER_POOL.render(
                ctx.email, lambda: ctx.raw, size=len(ctx.message.raw),
                letterhead=self._letterhead(), key=key, language=self.tenant.language,
                processes=settings.render_processes,
                in_gateway_above_bytes=int(settings.render_in_gateway_above_mb * 1024 * 1024),
                signing=settings.signing)
        except render_pool.WorkerDied as exc:
            # The next try gets a new worker; the pipeline quarantines the copy when it keeps
            # happening (a message that kills its worker every time).
            log.warning("render worker died while rendering message %s: %s", ctx.message.id, exc)
            return RetryLater(reason=Text(
                de="Der PDF-Erzeuger wurde während der Arbeit beendet",
                en="the PDF render worker died while rendering"))
        carrier = await self._carrier(ctx, pdf)
        return Protected(
            outgoing=[Outgoing(channel=self.tenant.delivery_channel,
                               mail_from=str(ctx.message.envelope.mail_from or ""),
                               recipients=[str(ctx.recipient)], raw=carrier)],
            reason=Text(de="als passwortgeschützte PDF-Datei (AES-256) zugestellt",
                        en="delivered as a password-protected PDF (AES-256)"))

    def _letterhead(self) -> Letterhead:
        return Letterhead(tenant_name=self.tenant.name,
                          address_lines=self.settings.letterhead_lines,
                          logo_png=self.settings.logo_png, time_zone=self.tenant.time_zone.key)

    async def _hold_for_registration(self, ctx: RecipientContext) -> datetime | RecipientKey:
        """Record the copy as waiting for the recipient's registration; when it will expire.
        The recipient's key instead if the recipient registered since protect looked."""
        # The same lock as the release after registration, so that a copy is either in the
        # waiting list that the release reads, or sees the new account.
        async with self.waiting.updating(ctx.recipient):
            registered = await self.recipient_key(ctx.recipient)
            if registered is not None:
                return registered
            until, first = await self.waiting.add(ctx.message.id, ctx.recipient,
                                                  timedelta(days=self.settings.hold_days))
        if first:
            token = await self.issue_token("register", ctx.recipient, until - self.now)
            await self._send(ctx.recipient, "invitation", {
                "register_link": self.link(f"/register/{token}"),
                "expires": self.tenant.format_time(until, "de"),
                "expires_en": self.tenant.format_time(until, "en"),
            }, about=HeldCopy(ctx.message.id, ctx.recipient))
        return until

    async def _carrier(self, ctx: RecipientContext, pdf: bytes) -> bytes:
        original = ctx.email
        subject = str(original.get("subject", ""))
        reply_token = await self.issue_token(
            "reply", ctx.recipient, timedelta(days=self.settings.reply_link_days),
            message_id=ctx.message.id, reply_to=str(ctx.message.envelope.mail_from or ""),
            subject=subject)
        neutral = Text(de=f"Verschlüsselte Nachricht von {self.tenant.name}",
                       en=f"Encrypted message from {self.tenant.name}")
        languages = ("de", "en") if self.tenant.language == "de" else ("en", "de")
        values = {"tenant": self.tenant.name,
                  "reply_link": self.link(f"/reply/{reply_token}"),
                  "password_link": self.link("/password")}
        carrier = mailtext.compose(
            package="siegel.plugins.password_pdf", name="carrier", languages=languages,
            values={lang: {**values, "subject": neutral.get(lang)} for lang in languages},
            sender=str(original.get("from", "")) or str(ctx.message.envelope.mail_from or ""),
            to=str(ctx.recipient), override=self.settings.templates)
        if self.settings.carrier_subject == "original" and subject:
            carrier.set("Subject", subject)
        else:
            carrier.set("Subject", neutral.get(self.tenant.language))
        carrier.remove("Auto-Submitted")
        for name in ("Date", "Message-ID", "In-Reply-To", "References"):
            if original.get(name) is not None:
                carrier.set(name, str(original[name]))
        carrier.add("X-Siegel-Protection", METHOD)
        carrier.attach(pdf, "application/pdf", "nachricht.pdf")
        return carrier.to_bytes()

    async def _send(self, recipient: Address, template: str, values: dict[str, str], *,
                    about: HeldCopy | None = None) -> None:
        """Send one of the plugin's mails to a recipient; ``about`` names the held copy an
        invitation is for, so that a bounce of it ends that copy and tells its sender."""
        languages = ("de", "en") if self.tenant.language == "de" else ("en", "de")
        sender = self.settings.mail_from or self.tenant.notice_from
        message = mailtext.compose(
            package="siegel.plugins.password_pdf", name=template, languages=languages,
            values={"tenant": self.tenant.name, **values},
            sender=email.utils.formataddr((self.tenant.name, sender)), to=str(recipient),
            override=self.settings.templates)
        message.add("X-Siegel-Mail", f"password_pdf.{template}")
        await self.services.send_system_mail(self.tenant.id, SystemMail(
            mail_from="", recipients=[str(recipient)], raw=message.to_bytes(),
            channel=self.tenant.delivery_channel, about=about))

    # -- what the portal calls ------------------------------------------------------------------

    async def register(self, token: str, password: str) -> tuple[Address, list[Text]]:
        """Set the first password. Returns the recipient and the problems (empty: done)."""
        return await self._set_password(token, "register", password)

    async def _set_password(self, token: str, purpose: Literal["register", "reset"],
                            password: str) -> tuple[Address, list[Text]]:
        """Check the link and the password, store the key, release what waited for it."""
        record = await self.read_token(token, purpose)
        recipient = Address.load(record.recipient)
        problems = password_problems(password, recipient, self.settings.minimum_password_length)
        if problems:
            return recipient, problems
        key = derive_recipient_key(password)
        await self.consume_token(token, purpose)
        await self._replace_password(recipient, password, key, tell=purpose == "reset")
        return recipient, []

    async def _replace_password(self, recipient: Address, password: str, key: RecipientKey, *,
                                tell: bool) -> None:
        """Store the new key and hash in one step (creating the account: the recipient proved
        control of the address through the link), tell the recipient (unless this is the first
        password), and release what waited for a password."""
        await self.upgrade_keys()
        await self.accounts.set_password(recipient, password, slot=(SLOT, encode_key(key)))
        if tell:
            await self._send(recipient, "password_changed", {
                "when": self.tenant.format_time(self.now, "de"),
                "when_en": self.tenant.format_time(self.now, "en"),
                "password_link": self.link("/password")})
        await self._release_held(recipient)

    async def _release_held(self, recipient: Address) -> None:
        await self.waiting.release(recipient, self.services)

    async def request_reset(self, recipient: Address) -> None:
        """Send a one-time reset link if the recipient has a password. Callers answer the same
        whether or not it had one, so the portal does not reveal who is registered."""
        if await self.recipient_key(recipient) is None:
            return
        minutes = self.settings.reset_link_minutes
        token = await self.issue_token("reset", recipient, timedelta(minutes=minutes))
        until = self.now + timedelta(minutes=minutes)
        await self._send(recipient, "reset", {"reset_link": self.link(f"/reset/{token}"),
                                              "minutes": f"{minutes:g}",
                                              "expires": self.tenant.format_time(until, "de"),
                                              "expires_en": self.tenant.format_time(until, "en")})

    async def reset(self, token: str, password: str) -> tuple[Address, list[Text]]:
        """Set a new password through a reset link; the recipient is told by mail."""
        return await self._set_password(token, "reset", password)

    async def verify_login(self, recipient: Address, password: str) -> PortalAccount | None:
        """The account if ``password`` is the recipient's, else ``None``. An unknown recipient,
        an account without a login hash and a wrong password take the same time and give the same
        answer. A hash made with older parameters is replaced by one made with the current ones."""
        await self.upgrade_keys()
        account = await self.accounts.verify_password(recipient, password)
        return PortalAccount.of(recipient, account) if account is not None else None

    async def portal_account(self, recipient: Address) -> PortalAccount | None:
        """The recipient's account, if it exists and can log in (has a login hash)."""
        account = await self._account(recipient)
        if account is None or not account.can_log_in:
            return None
        return PortalAccount.of(recipient, account)

    async def change_password(self, recipient: Address, password: str) -> list[Text]:
        """Set a new password for a recipient who is logged in to the portal (the caller checked
        the current password), exactly as a reset link would. Returns the problems with the new
        password; empty: done."""
        problems = password_problems(password, recipient, self.settings.minimum_password_length)
        if problems:
            return problems
        await self._replace_password(recipient, password, derive_recipient_key(password),
                                     tell=True)
        return []

    async def reply(self, token: str, text: str,
                    attachments: Sequence[tuple[str, str, bytes]] = ()) -> str:
        """Send the recipient's reply to the original sender; returns the id of the stored mail.
        A reply token can only send replies, never show anything."""
        record = await self.read_token(token, "reply")
        if not record.reply_to:
            raise TokenInvalid("no sender to reply to")
        # The reply is a system mail (not classified), so it may only go back inside the network.
        if internal_match(self.tenant.internal, Address.load(record.reply_to)) is None:
            raise TokenInvalid("the original sender is outside the tenant's network")
        languages = ("de", "en") if self.tenant.language == "de" else ("en", "de")
        received = self.now
        message = mailtext.compose(
            package="siegel.plugins.password_pdf", name="reply", languages=languages,
            values={"recipient": record.recipient, "message_id": record.message_id or "",
                    "subject": record.subject or "", "text": text,
                    "when": self.tenant.format_time(received, "de"),
                    "when_en": self.tenant.format_time(received, "en")},
            sender=email.utils.formataddr((f"{record.recipient} (über siegel)",
                                           self.tenant.notice_from)),
            to=record.reply_to, override=self.settings.templates)
        message.add("Reply-To", record.recipient)
        message.add("X-Siegel-Reply-To-Message", record.message_id or "")
        message.remove("Auto-Submitted")
        for filename, content_type, content in attachments:
            message.attach(content, content_type, filename)
        return await self.services.send_system_mail(self.tenant.id, SystemMail(
            mail_from="", recipients=[record.reply_to], raw=message.to_bytes(),
            channel=self.tenant.delivery_channel))

