"""A recipient's PDF key material and the links of the password-PDF workflow.

A recipient's account is the core's (:mod:`siegel.accounts`, shared with every other plugin): it
keeps the login hash and when the password was set; the PDF key material derived from the password
(:class:`RecipientKey`) is this plugin's slot of it (:data:`SLOT`, :func:`encode_key`).

Before accounts moved into the core, the plugin kept its own records in ``password_pdf.accounts``
(:class:`Account`); the workflow moves them onto the core's accounts on first use
(:meth:`~siegel.plugins.password_pdf.workflow.Workflow.upgrade_keys`). Held messages
(``password_pdf.pending``) are keyed by :attr:`siegel.Address.key`; links
(``password_pdf.tokens``) are stored only as the SHA-256 of their token.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any, Literal

import attrs

from siegel import Account as SharedAccount
from siegel import Address, InvalidAddress
from siegel.invitations import LinkInvalid, waiting_key

from .encrypt import RecipientKey

#: This plugin's slot in a recipient's account: the PDF key material.
SLOT = "password_pdf"

Purpose = Literal["register", "reset", "reply"]


#: A link that is unknown, used, expired or meant for something else (the core's, shared with
#: every plugin that sends links).
TokenInvalid = LinkInvalid


@attrs.frozen(kw_only=True)
class TokenRecord:
    purpose: Purpose
    tenant: str
    recipient: str
    created_at: str
    version: int
    key: str
    message_id: str | None = None
    reply_to: str | None = None
    subject: str | None = None


@attrs.frozen(kw_only=True)
class Account:
    """A recipient's record in ``password_pdf.accounts`` as siegel kept it before accounts moved
    into the core: what the PDFs need and the login hash. Read only to move it
    (:meth:`shared`); nothing writes this format any more. Accounts from before the portal
    login have no ``login_hash``; they cannot log in until the password is set again."""

    key: RecipientKey
    set_at: datetime
    login_hash: str | None = attrs.field(default=None, repr=False)

    def encode(self) -> bytes:
        data = {"u": base64.b64encode(self.key.u_entry).decode(),
                "ue": base64.b64encode(self.key.ue_key).decode(),
                "set_at": self.set_at.isoformat()}
        if self.login_hash is not None:
            data["login_hash"] = self.login_hash
        return json.dumps(data).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Account:
        data = json.loads(raw)
        return cls(key=RecipientKey(base64.b64decode(data["u"]), base64.b64decode(data["ue"])),
                   set_at=datetime.fromisoformat(data["set_at"]), login_hash=data.get("login_hash"))

    def shared(self, tenant: str, recipient: Address,
               current: SharedAccount | None) -> SharedAccount:
        """The shared account with this record moved onto it: its key material becomes this
        plugin's slot, its login hash the account's (unless the account has a newer password)."""
        account = current if current is not None else SharedAccount.new(
            tenant, recipient, self.set_at)  # created no later than its password was set
        if self.login_hash is not None and (account.password_set_at is None
                                            or account.password_set_at <= self.set_at):
            account = account.with_password(self.login_hash, self.set_at)
        elif account.login_hash is None:
            account = attrs.evolve(account, password_set_at=self.set_at)
        return account.with_slot(SLOT, encode_key(self.key))


def encode_key(key: RecipientKey) -> bytes:
    """The slot's content: the R6 ``/U`` entry and the file key wrapped with the password."""
    return json.dumps({"u": base64.b64encode(key.u_entry).decode(),
                       "ue": base64.b64encode(key.ue_key).decode()}).encode()


def decode_key(slot: bytes) -> RecipientKey:
    data = json.loads(slot)
    return RecipientKey(base64.b64decode(data["u"]), base64.b64decode(data["ue"]))


def pdf_key(account: SharedAccount | None) -> RecipientKey | None:
    """The recipient's PDF key material, if they chose a password for PDFs."""
    slot = account.slot(SLOT) if account is not None else None
    return decode_key(slot) if slot is not None else None


@attrs.frozen(kw_only=True)
class PortalAccount:
    """A recipient as the portal's account page shows them."""

    recipient: Address
    password_set_at: datetime
    #: Changes whenever the password (or its hash) changes; a login remembers it, so that a
    #: reset or change elsewhere ends every older login of the account.
    password_version: str

    @classmethod
    def of(cls, recipient: Address, account: SharedAccount) -> PortalAccount:
        assert account.password_version is not None and account.password_set_at is not None
        return cls(recipient=recipient, password_set_at=account.password_set_at,
                   password_version=account.password_version)


def upgraded_key(tenant: str, stored_key: str) -> str | None:
    """The key a record stored under ``stored_key`` belongs under now; ``None`` for keys that
    name no address (the upgrade marker)."""
    spelt = stored_key.removeprefix(f"{tenant}/")
    if "@" not in spelt:
        return None
    try:
        return account_key(tenant, Address.load(spelt))
    except InvalidAddress:
        return None


def merge_accounts(records: list[tuple[str, bytes]]) -> bytes:
    """Several spellings had accounts: the password set last stays (it is the one the recipient
    remembers best; PDFs already sent stay readable with the password they were made for)."""
    return max((value for _spelt, value in records), key=lambda v: Account.decode(v).set_at)


def merge_pending(records: list[tuple[str, bytes]]) -> bytes:
    """Several spellings had held messages: all stay held, until the latest end of the holds;
    each is released under the address its message has."""
    merged: dict[str, Any] = {"messages": [], "until": None, "held": {}}
    for spelt, value in records:
        data = json.loads(value)
        merged["messages"] += [m for m in data["messages"] if m not in merged["messages"]]
        merged["held"].update({m: spelt for m in data["messages"]}, **data.get("held", {}))
        if merged["until"] is None or data["until"] > merged["until"]:
            merged["until"] = data["until"]
    return json.dumps(merged).encode()


def account_key(tenant: str, recipient: Address) -> str:
    return waiting_key(tenant, recipient)


#: Marks (per tenant) that every record is keyed by ``Address.key``; it has no "@", so no address
#: key can collide with it. Older siegel kept it in ``password_pdf.accounts``, now it is in
#: ``password_pdf.pending``.
KEYS_UPGRADED = ".keys-case-insensitive"
