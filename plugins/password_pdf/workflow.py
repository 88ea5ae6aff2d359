"""The district's password-PDF workflow (seed 000_1253fbd76cd12a7e.txt, section 2).

* A known recipient (who has chosen a password) gets the message at once as an AES-256 PDF inside a
  carrier mail with a reply link and a password link.
* On first contact the message is held (encrypted in the store) and the recipient gets one
  invitation with a single-use registration link, valid ``hold_days`` (5); every further message
  for them waits for the same registration. Registering releases all of them.
* The password is never stored: only the R6 ``/U`` entry, the key derived from the password
  (``ue_key``) and an Argon2id hash for the portal login (:mod:`.login`), in plugin state,
  encrypted at rest. Tokens are 256-bit random values, stored only as their SHA-256,
  single-purpose and expiring.
* A recipient who logged in to the portal can change the password there; that works exactly as a
  reset by mail (new key and hash, a notice to the recipient, held messages released).
* Accounts and held messages are keyed by :attr:`siegel.Address.key`: ``ANNA@example.org`` and
  ``anna@example.org`` are one recipient (one invitation, one password, one login). Records an
  older siegel wrote under the address as spelt are moved to that key the first time the tenant's
  accounts are used (:meth:`Workflow.upgrade_keys`); where two spellings had two accounts, the
  password set last stays and the held messages of both are kept.
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import json
import logging
import secrets
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import attrs

from siegel import (
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
from siegel.settings import not_negative, positive

from . import render_pool
from .accounts import (
    KEYS_UPGRADED,
    Account,
    PortalAccount,
    Purpose,
    TokenInvalid,
    TokenRecord,
    account_key,
    hash_token,
    merge_accounts,
    merge_pending,
    upgraded_key,
)
from .encrypt import PasswordRejected, RecipientKey, derive_recipient_key
from .login import check_password, hash_password
from .render import Letterhead
from .signing import PdfSigning, SigningKeyInvalid

log = logging.getLogger(__name__)

SECTION = "password_pdf"
METHOD = "password_pdf"
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


@functools.cache
def _common_passwords() -> frozenset[str]:
    """Loaded when a password is first checked: zxcvbn's lists cost about 12 MB in every gateway
    process, and only the portal needs them."""
    import zxcvbn.frequency_lists

    return frozenset(zxcvbn.frequency_lists.FREQUENCY_LISTS["passwords"]) | frozenset({
        "passwort", "passwort1", "passwort123", "hallo123", "hallohallo", "geheim", "geheim123",
        "qwertz", "qwertzuiop", "schatz", "fussball", "ichliebedich", "sommer2024", "sommer2025",
        "sommer2026", "winter2025", "winter2026", "einszweidrei", "1234567890ab",
    })


def password_problems(password: str, recipient: Address, minimum_length: int) -> list[Text]:
    """What is wrong with a new password, per OWASP ASVS 5 (length, common passwords; no
    composition rules). Empty when it is acceptable."""
    problems: list[Text] = []
    if len(password) < minimum_length:
        problems.append(Text(de=f"Das Passwort muss mindestens {minimum_length} Zeichen lang sein.",
                             en=f"The password must be at least {minimum_length} characters long."))
    lowered = password.lower()
    common = _common_passwords()
    if lowered in common or lowered.rstrip("0123456789!.") in common:
        problems.append(Text(de="Dieses Passwort ist zu verbreitet; bitte wählen Sie ein anderes.",
                             en="This password is too common; please choose another one."))
    if recipient.local.lower() in lowered and len(recipient.local) >= 4:
        problems.append(Text(de="Das Passwort darf Ihre E-Mail-Adresse nicht enthalten.",
                             en="The password must not contain your e-mail address."))
    if len(set(password)) <= 2 and password:
        problems.append(Text(de="Das Passwort besteht nur aus einem oder zwei Zeichen.",
                             en="The password consists of only one or two characters."))
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
        self.accounts: PluginState = services.state(ACCOUNTS)
        self.pending: PluginState = services.state(PENDING)
        self.tokens: PluginState = services.state(TOKENS)

    @property
    def now(self) -> datetime:
        return self.services.clock.now()

    # -- links and tokens ---------------------------------------------------------------------

    def link(self, path: str) -> str:
        return self.services.portal_link(self.tenant.id, path)

    async def issue_token(self, purpose: Purpose, recipient: Address, ttl: timedelta,
                          **extra: str) -> str:
        token = secrets.token_urlsafe(32)
        record = {"purpose": purpose, "tenant": self.tenant.id, "recipient": str(recipient),
                  "created_at": self.now.isoformat(), **extra}
        await self.tokens.put(hash_token(token), json.dumps(record).encode(), ttl=ttl,
                              expect_version=0)
        return token

    async def read_token(self, token: str, purpose: Purpose) -> TokenRecord:
        record = await self.tokens.get(hash_token(token))
        if record is None:
            raise TokenInvalid("unknown or expired link")
        data = json.loads(record.value)
        if data.get("purpose") != purpose or data.get("tenant") != self.tenant.id:
            raise TokenInvalid("link for another purpose")
        return TokenRecord(version=record.version, key=record.key, **data)

    async def consume_token(self, token: str, purpose: Purpose) -> TokenRecord:
        """Read and delete a single-use token; a second use fails."""
        record = await self.read_token(token, purpose)
        if not await self.tokens.delete(record.key):
            raise TokenInvalid("link already used")
        return record

    # -- the protection method ------------------------------------------------------------------

    async def upgrade_keys(self) -> None:
        """Move account and held-message records written under an address as spelt (before
        addresses were case-insensitive) to :func:`account_key`. Runs once per tenant; a dry
        run, which may not write, leaves them and reads them through :meth:`_account`."""
        marker = f"{self.tenant.id}/{KEYS_UPGRADED}"
        if await self.accounts.get(marker) is not None:
            return
        try:
            await self._move_records(self.accounts, merge_accounts)
            await self._move_records(self.pending, merge_pending)
            await self.accounts.put(marker, b"1")
        except PermissionError:  # a dry run's read-only state
            return
        except StateConflict:  # another instance is moving the same records: its result stands
            return

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

    async def _account(self, recipient: Address) -> StateRecord | None:
        """The recipient's account record, whatever case its address was written in."""
        await self.upgrade_keys()
        record = await self.accounts.get(account_key(self.tenant.id, recipient))
        if record is not None or await self.accounts.get(
                f"{self.tenant.id}/{KEYS_UPGRADED}") is not None:
            return record
        # Not upgraded (a dry run): find the record under any spelling, without writing.
        wanted = account_key(self.tenant.id, recipient)
        found = [r for r in await self.accounts.scan(f"{self.tenant.id}/")
                 if upgraded_key(self.tenant.id, r.key) == wanted]
        return max(found, key=lambda r: Account.decode(r.value).set_at, default=None)

    async def recipient_key(self, recipient: Address) -> RecipientKey | None:
        record = await self._account(recipient)
        if record is None:
            return None
        return Account.decode(record.value).key

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
        key = account_key(self.tenant.id, ctx.recipient)
        # The same lock as the release after registration, so that a copy is either in the
        # waiting list that the release reads, or sees the new account.
        async with self.pending.updating(key):
            registered = await self.recipient_key(ctx.recipient)
            if registered is not None:
                return registered
            return await self._record_held(ctx, key)

    async def _record_held(self, ctx: RecipientContext, key: str) -> datetime:
        for _attempt in range(5):
            record = await self.pending.get(key)
            if record is not None:
                data = json.loads(record.value)
                if ctx.message.id not in data["messages"]:
                    data["messages"].append(ctx.message.id)
                    # Released under the address as the message has it (the store's recipient).
                    data.setdefault("held", {})[ctx.message.id] = str(ctx.recipient)
                    try:
                        await self.pending.put(key, json.dumps(data).encode(),
                                               ttl=datetime.fromisoformat(data["until"]) - self.now,
                                               expect_version=record.version)
                    except StateConflict:  # a concurrent first-contact message won; read again
                        continue
                return datetime.fromisoformat(data["until"])
            ttl = timedelta(days=self.settings.hold_days)
            until = self.now + ttl
            data = {"messages": [ctx.message.id], "until": until.isoformat(),
                    "held": {ctx.message.id: str(ctx.recipient)}}
            try:
                await self.pending.put(key, json.dumps(data).encode(), ttl=ttl, expect_version=0)
            except StateConflict:
                continue
            token = await self.issue_token("register", ctx.recipient, ttl)
            await self._send(ctx.recipient, "invitation", {
                "register_link": self.link(f"/register/{token}"),
                "expires": self.tenant.format_time(until, "de"),
                "expires_en": self.tenant.format_time(until, "en"),
            }, about=HeldCopy(ctx.message.id, ctx.recipient))
            return until
        raise RuntimeError(f"could not record the held message for {ctx.recipient}")

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
        account = await self._new_account(password)
        await self.consume_token(token, purpose)
        await self._replace_password(recipient, account, tell=purpose == "reset")
        return recipient, []

    async def _new_account(self, password: str) -> Account:
        return Account(key=derive_recipient_key(password), set_at=self.now,
                        login_hash=await hash_password(password))

    async def _replace_password(self, recipient: Address, account: Account, *,
                                tell: bool) -> None:
        """Store the new key and hash, tell the recipient (unless this is the first password),
        and release what waited for a password."""
        await self.upgrade_keys()
        await self.accounts.put(account_key(self.tenant.id, recipient), account.encode())
        if tell:
            await self._send(recipient, "password_changed", {
                "when": self.tenant.format_time(self.now, "de"),
                "when_en": self.tenant.format_time(self.now, "en"),
                "password_link": self.link("/password")})
        await self._release_held(recipient)

    async def _release_held(self, recipient: Address) -> None:
        key = account_key(self.tenant.id, recipient)
        async with self.pending.updating(key):
            record = await self.pending.get(key)
            if record is None:
                return
            data = json.loads(record.value)
            held = data.get("held", {})
            for message_id in data["messages"]:
                spelt = held.get(message_id)
                await self.services.release(
                    message_id, Address.load(spelt) if spelt else recipient)
            await self.pending.delete(key)

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
        key = account_key(self.tenant.id, recipient)
        record = await self._account(recipient)
        account = Account.decode(record.value) if record is not None else None
        check = await check_password(account.login_hash if account else None, password)
        if not check.verified or account is None or record is None:
            return None
        if check.needs_rehash:
            account = attrs.evolve(account, login_hash=await hash_password(password))
            # A conflict means the password changed meanwhile; the new one stands, and the
            # login ends at the next request because its password version is outdated.
            with contextlib.suppress(StateConflict):
                await self.accounts.put(key, account.encode(), expect_version=record.version)
        return PortalAccount.of(recipient, account)

    async def portal_account(self, recipient: Address) -> PortalAccount | None:
        """The recipient's account, if it exists and can log in (has a login hash)."""
        record = await self._account(recipient)
        if record is None:
            return None
        account = Account.decode(record.value)
        return PortalAccount.of(recipient, account) if account.login_hash is not None else None

    async def change_password(self, recipient: Address, password: str) -> list[Text]:
        """Set a new password for a recipient who is logged in to the portal (the caller checked
        the current password), exactly as a reset link would. Returns the problems with the new
        password; empty: done."""
        problems = password_problems(password, recipient, self.settings.minimum_password_length)
        if problems:
            return problems
        await self._replace_password(recipient, await self._new_account(password), tell=True)
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

