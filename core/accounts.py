"""Recipient accounts: one per tenant and address, shared by every plugin that needs one.

The password PDF's recipient (password, portal login) and, later, the postbox user are the same
account. An account lives in the store (namespace :data:`NAMESPACE`, encrypted at rest like all
plugin state, keyed ``TENANT/ADDRESS-KEY`` with :attr:`siegel.Address.key`), so that it survives a
restart and every instance of the gateway sees the same one.

What the core keeps for every account: the address as first written, the identity level, the
Argon2id login hash (:mod:`siegel.passwords`) and when the password was set. What a plugin needs
besides (the password PDF's key material) goes into the plugin's own *slot*: bytes that only the
plugin decodes. Plugins reach accounts through ``services.accounts(tenant)`` (an
:class:`Accounts`), never through each other's state.

Second factors are part of the account too (:class:`TotpFactor`, :class:`Passkey`,
:class:`RecoveryCodes`): the TOTP secret is kept as it is (the server must compute codes from it;
the store encrypts it at rest), recovery codes only as hashes, passkeys as their public keys.

Every change is one atomic read-decide-write (:meth:`Accounts.update`), so that twenty
first-contact mails for one new recipient, or a password change during a login, cannot lose an
update, with any store backend and any number of instances.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import attrs

from siegel.addresses import Address
from siegel.model import IdentityLevel as IdentityLevel  # its home before levels were required
from siegel.model import Text
from siegel.passwords import check_password, hash_password
from siegel.state import PluginState
from siegel.store import StateRecord, StateWrite

#: The store namespace of all accounts (of every tenant).
NAMESPACE = "siegel.accounts"


class AccountMissing(LookupError):
    """The address has no account in this tenant."""


@attrs.frozen(kw_only=True)
class TotpFactor:
    """A TOTP authenticator (RFC 6238: SHA-1, 30 s, 6 digits, as every app reads it)."""

    secret: bytes = attrs.field(repr=False)
    created_at: datetime
    #: The time step of the last code accepted: a code is accepted once (no replay), and never
    #: one of an earlier step.
    last_step: int = -1

    def encode(self) -> dict[str, Any]:
        return {"secret": base64.b64encode(self.secret).decode("ascii"),
                "created_at": self.created_at.isoformat(), "last_step": self.last_step}

    @classmethod
    def decode(cls, data: Mapping[str, Any]) -> TotpFactor:
        return cls(secret=base64.b64decode(data["secret"]),
                   created_at=datetime.fromisoformat(data["created_at"]),
                   last_step=int(data["last_step"]))


@attrs.frozen(kw_only=True)
class Passkey:
    """A WebAuthn credential registered for the account: its id and public key (COSE), never a
    secret."""

    credential_id: bytes
    public_key: bytes = attrs.field(repr=False)
    sign_count: int
    created_at: datetime
    #: What the user called it, or a default ("Passkey 1").
    label: str
    last_used_at: datetime | None = None

    def encode(self) -> dict[str, Any]:
        return {"id": base64.b64encode(self.credential_id).decode("ascii"),
                "public_key": base64.b64encode(self.public_key).decode("ascii"),
                "sign_count": self.sign_count, "created_at": self.created_at.isoformat(),
                "label": self.label,
                "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None}

    @classmethod
    def decode(cls, data: Mapping[str, Any]) -> Passkey:
        used = data.get("last_used_at")
        return cls(credential_id=base64.b64decode(data["id"]),
                   public_key=base64.b64decode(data["public_key"]),
                   sign_count=int(data["sign_count"]),
                   created_at=datetime.fromisoformat(data["created_at"]), label=str(data["label"]),
                   last_used_at=datetime.fromisoformat(used) if used else None)


@attrs.frozen(kw_only=True)
class RecoveryCodes:
    """The account's unused recovery codes, as hashes (SHA-256 of the normalised code; a code
    has 80 random bits, so a fast hash is enough). Each is single use; a new set replaces all."""

    hashes: tuple[str, ...] = attrs.field(repr=False)
    created_at: datetime

    def encode(self) -> dict[str, Any]:
        return {"hashes": list(self.hashes), "created_at": self.created_at.isoformat()}

    @classmethod
    def decode(cls, data: Mapping[str, Any]) -> RecoveryCodes:
        return cls(hashes=tuple(data["hashes"]),
                   created_at=datetime.fromisoformat(data["created_at"]))


def _passkeys(value: Iterable[Passkey]) -> tuple[Passkey, ...]:
    return tuple(value)


def _texts(value: Iterable[Text]) -> tuple[Text, ...]:
    return tuple(value)


def _slot_owner(owner: str) -> str:
    if not owner or not owner.replace("_", "").replace(".", "").isalnum():
        raise ValueError(f"a slot is named by its plugin (letters, digits, '_', '.'), not {owner!r}")
    return owner


def _slots(value: Mapping[str, bytes]) -> Mapping[str, bytes]:
    return {_slot_owner(owner): bytes(data) for owner, data in value.items()}


@attrs.frozen(kw_only=True)
class Account:
    """One recipient account. Change it with :meth:`Accounts.update` (or the helpers beside it);
    values are frozen, so a plugin that holds one holds a snapshot."""

    tenant: str
    #: The address as first written (for greetings and mails); :attr:`key` identifies it.
    address: str
    key: str
    level: IdentityLevel
    created_at: datetime
    login_hash: str | None = attrs.field(default=None, repr=False)
    password_set_at: datetime | None = None
    #: Per-plugin data, by plugin name; only the owning plugin decodes its slot.
    slots: Mapping[str, bytes] = attrs.field(factory=dict, converter=_slots, repr=False)
    #: Second factors (see :attr:`has_second_factor`) and the recovery codes that replace them.
    totp: TotpFactor | None = None
    passkeys: tuple[Passkey, ...] = attrs.field(default=(), converter=_passkeys)
    recovery_codes: RecoveryCodes | None = None

    @classmethod
    def new(cls, tenant: str, address: Address, now: datetime, *,
            level: IdentityLevel = IdentityLevel.MAILBOX) -> Account:
        return cls(tenant=tenant, address=str(address), key=address.key, level=level,
                   created_at=now)

    @property
    def can_log_in(self) -> bool:
        return self.login_hash is not None

    @property
    def password_version(self) -> str | None:
        """Changes whenever the password (or its hash) changes; a login remembers it, so that a
        change elsewhere ends every older login. ``None``: no password."""
        if self.login_hash is None:
            return None
        return hashlib.sha256(self.login_hash.encode()).hexdigest()[:32]

    @property
    def has_second_factor(self) -> bool:
        """Whether signing in needs a second factor after the password (a TOTP app or a
        passkey; recovery codes stand in for one, they are not one)."""
        return self.totp is not None or bool(self.passkeys)

    def slot(self, owner: str) -> bytes | None:
        """The data plugin ``owner`` keeps in this account, if any."""
        return self.slots.get(owner)

    def with_slot(self, owner: str, data: bytes | None) -> Account:
        """This account with plugin ``owner``'s slot replaced (``None``: removed)."""
        slots = {k: v for k, v in self.slots.items() if k != owner}
        if data is not None:
            slots[_slot_owner(owner)] = data
        return attrs.evolve(self, slots=slots)

    def with_password(self, login_hash: str, set_at: datetime) -> Account:
        return attrs.evolve(self, login_hash=login_hash, password_set_at=set_at)

    def encode(self) -> bytes:
        data: dict[str, Any] = {
            "tenant": self.tenant, "address": self.address, "key": self.key,
            "level": self.level.label, "created_at": self.created_at.isoformat(),
            "login_hash": self.login_hash,
            "password_set_at": (self.password_set_at.isoformat()
                                if self.password_set_at is not None else None),
            "slots": {k: base64.b64encode(v).decode("ascii") for k, v in self.slots.items()}}
        if self.totp is not None:
            data["totp"] = self.totp.encode()
        if self.passkeys:
            data["passkeys"] = [p.encode() for p in self.passkeys]
        if self.recovery_codes is not None:
            data["recovery_codes"] = self.recovery_codes.encode()
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Account:
        data = json.loads(raw)
        set_at = data.get("password_set_at")
        return cls(tenant=data["tenant"], address=data["address"], key=data["key"],
                   level=IdentityLevel.of(data["level"]),
                   created_at=datetime.fromisoformat(data["created_at"]),
                   login_hash=data.get("login_hash"),
                   password_set_at=datetime.fromisoformat(set_at) if set_at else None,
                   slots={k: base64.b64decode(v) for k, v in data.get("slots", {}).items()},
                   totp=TotpFactor.decode(data["totp"]) if data.get("totp") else None,
                   passkeys=tuple(Passkey.decode(p) for p in data.get("passkeys", ())),
                   recovery_codes=(RecoveryCodes.decode(data["recovery_codes"])
                                   if data.get("recovery_codes") else None))


@attrs.frozen(kw_only=True)
class PasswordSlot:
    """A plugin's answer to a new password (hook ``siegel_account_password_set``): the slot
    content that goes with it (``None``: remove the plugin's slot) or why the plugin cannot use
    the password (then nothing is stored)."""

    data: bytes | None = attrs.field(default=None, repr=False)
    problems: tuple[Text, ...] = attrs.field(default=(), converter=_texts)


class PasswordRefused(ValueError):
    """A plugin cannot use the new password; :attr:`problems` says why (shown to the user)."""

    def __init__(self, problems: list[Text]) -> None:
        super().__init__("; ".join(p.en for p in problems))
        self.problems = problems


#: What the running gateway asks when a password is set: every enabled plugin's
#: :class:`PasswordSlot` for (the account as it is, the new password), by plugin name.
PasswordHook = Callable[["Account", str], Mapping[str, PasswordSlot]]


#: A change of one account: gets the current account (``None``: none yet) and returns the account
#: to store (``None`` or the same object: leave it). Must be quick and free of side effects: it
#: may run more than once.
AccountChange = Callable[[Account | None], Account | None]


class Accounts:
    """The accounts of one tenant (``services.accounts(tenant)``)."""

    def __init__(self, state: PluginState, tenant: str, *,
                 password_hook: PasswordHook | None = None) -> None:
        if state.namespace != NAMESPACE:
            raise ValueError(f"accounts live in the namespace {NAMESPACE!r}, "
                             f"not {state.namespace!r}")
        self.state = state
        self.tenant = tenant
        self.password_hook = password_hook

    @property
    def now(self) -> datetime:
        return self.state.clock.now()

    def record_key(self, address: Address) -> str:
        return f"{self.tenant}/{address.key}"

    def _decode(self, record: StateRecord | None) -> Account | None:
        if record is None:
            return None
        account = Account.decode(record.value)
        if account.tenant != self.tenant:  # a record copied under another tenant's key
            raise ValueError(f"{NAMESPACE}/{record.key}: the account belongs to tenant "
                             f"{account.tenant!r}")
        return account

    async def get(self, address: Address) -> Account | None:
        return self._decode(await self.state.get(self.record_key(address)))

    async def all(self) -> list[Account]:
        """Every account of the tenant, in the order of their keys."""
        found = (self._decode(r) for r in await self.state.scan(f"{self.tenant}/"))
        return [a for a in found if a is not None]

    async def update(self, address: Address, change: AccountChange) -> Account | None:
        """Read, change and write the account of ``address`` as one atomic step; returns the
        account as stored afterwards."""
        key = self.record_key(address)

        def step(record: StateRecord | None) -> tuple[StateWrite | None, Account | None]:
            current = self._decode(record)
            changed = change(current)
            if changed is None or changed is current:
                return None, current
            if changed.tenant != self.tenant or changed.key != address.key:
                raise ValueError(f"an account of {self.tenant}/{address.key} cannot become "
                                 f"{changed.tenant}/{changed.key}")
            return StateWrite(value=changed.encode()), changed

        return await self.state.update(key, step)

    async def open(self, address: Address, *,
                   level: IdentityLevel = IdentityLevel.MAILBOX) -> Account:
        """The account of ``address``, created (at ``level``) if there is none."""
        now = self.now
        account = await self.update(
            address, lambda a: a if a is not None else Account.new(self.tenant, address, now,
                                                                    level=level))
        assert account is not None
        return account

    async def _password_slots(self, address: Address,
                              password: str) -> tuple[Account, Mapping[str, PasswordSlot]]:
        current = await self.get(address) or Account.new(self.tenant, address, self.now)
        answers = self.password_hook(current, password) if self.password_hook else {}
        return current, answers

    async def password_problems(self, address: Address, password: str) -> list[Text]:
        """Why an enabled plugin cannot use ``password`` for this account (empty: none); the
        plugins' ``siegel_account_password_set`` answers, without storing anything."""
        _current, answers = await self._password_slots(address, password)
        problems: list[Text] = []
        for answer in answers.values():
            problems += [p for p in answer.problems if p not in problems]
        return problems

    async def set_password(self, address: Address, password: str, *,
                           slot: tuple[str, bytes] | None = None) -> Account:
        """Hash ``password`` and store it (creating the account at level ``mailbox``: whoever
        sets a password came through a link sent to the address), with the slots the enabled
        plugins derive from it (hook ``siegel_account_password_set``) and ``slot`` (owner,
        data), all in the same step, so that a plugin's key material and the login never
        disagree. Raises :class:`PasswordRefused` when a plugin cannot use the password."""
        _current, answers = await self._password_slots(address, password)
        problems: list[Text] = []
        for answer in answers.values():
            problems += [p for p in answer.problems if p not in problems]
        if problems:
            raise PasswordRefused(problems)
        login_hash = await hash_password(password)
        now = self.now

        def change(current: Account | None) -> Account:
            account = current if current is not None else Account.new(self.tenant, address, now)
            account = account.with_password(login_hash, now)
            for owner, answer in answers.items():
                account = account.with_slot(owner, answer.data)
            return account.with_slot(*slot) if slot is not None else account

        account = await self.update(address, change)
        assert account is not None
        return account

    async def verify_password(self, address: Address, password: str) -> Account | None:
        """The account if ``password`` is its password, else ``None``. An unknown address, an
        account without a password and a wrong password take the same time and give the same
        answer. A hash made with older parameters is replaced, unless the password changed
        meanwhile (then the new one stands)."""
        account = await self.get(address)
        check = await check_password(account.login_hash if account else None, password)
        if not check.verified or account is None:
            return None
        if check.needs_rehash:
            old_hash = account.login_hash
            new_hash = await hash_password(password)
            assert account.password_set_at is not None
            set_at = account.password_set_at

            def rehash(current: Account | None) -> Account | None:
                if current is None or current.login_hash != old_hash:
                    return current
                return current.with_password(new_hash, set_at)

            try:
                return await self.update(address, rehash) or account
            except PermissionError:  # a read-only request: the next login replaces it
                return account
        return account

    async def put_slot(self, address: Address, owner: str, data: bytes | None) -> Account:
        """Replace plugin ``owner``'s slot in an existing account (``None``: remove it)."""
        def change(current: Account | None) -> Account:
            if current is None:
                raise AccountMissing(f"{self.tenant}: no account for {address.key}")
            return current.with_slot(owner, data)

        account = await self.update(address, change)
        assert account is not None
        return account

    async def raise_level(self, address: Address, level: IdentityLevel) -> Account:
        """Raise an existing account to ``level``; a higher level stays."""
        def change(current: Account | None) -> Account:
            if current is None:
                raise AccountMissing(f"{self.tenant}: no account for {address.key}")
            return current if current.level >= level else attrs.evolve(current, level=level)

        account = await self.update(address, change)
        assert account is not None
        return account

    async def delete(self, address: Address) -> bool:
        return await self.state.delete(self.record_key(address))
