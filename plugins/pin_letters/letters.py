"""The letters of one tenant in the store (plugin state ``pin_letters``, one record per account,
keyed ``TENANT/ADDRESS-KEY``), and what may happen to them:

``pending``
    requested (on the portal or by an administrator), waiting to be printed;
``printed``
    printed with a PIN, which is valid until ``valid_until`` for ``max_attempts`` tries;
``used``
    the PIN was confirmed, the account raised to ``confirmed``; the PIN is gone;
``void``
    too many wrong PINs; a new letter must be requested.

Every change is one atomic read-decide-write of the record (``state.update``), so that two
pages, two instances or a page and ``siegel letters render`` never overwrite each other. An
attempt is counted *before* the PIN is checked: parallel guesses cannot get more than
``max_attempts`` checks out of one letter.
"""

from __future__ import annotations

import enum
import json
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import attrs

from siegel import (
    Accounts,
    Address,
    AuditEvent,
    Clock,
    IdentityLevel,
    Notice,
    PluginState,
    StateRecord,
    StateWrite,
    check_password,
    hash_password,
)

from .pins import new_pin
from .postal import PostalAddress

NAMESPACE = "pin_letters"


class LetterServices(Protocol):
    """What the letters need of the gateway: the running one's ``services`` or, in
    ``siegel letters``, :class:`siegel.commands.OfflineServices`."""

    @property
    def clock(self) -> Clock: ...

    def state(self, namespace: str) -> PluginState: ...

    def accounts(self, tenant: str) -> Accounts: ...

    async def report(self, tenant: str, *, notices: Sequence[Notice] = (),
                     events: Sequence[AuditEvent] = ()) -> None: ...


class LetterStatus(enum.StrEnum):
    PENDING = "pending"
    PRINTED = "printed"
    USED = "used"
    VOID = "void"


@attrs.frozen(kw_only=True)
class Letter:
    """One account's letter (the latest; a new request replaces it)."""

    address: str
    key: str
    recipient: PostalAddress
    status: LetterStatus
    requested_at: datetime
    #: "portal" (the account holder) or "cli" (an administrator).
    requested_by: str
    #: New with every request: tells a letter from its replacement.
    request_id: str = ""
    #: A reference printed on the letter, new for every print (not secret).
    reference: str | None = None
    printed_at: datetime | None = None
    valid_until: datetime | None = None
    pin_hash: str | None = attrs.field(default=None, repr=False)
    attempts: int = 0
    used_at: datetime | None = None

    def usable(self, now: datetime) -> bool:
        """Printed, not expired, and attempts left (the caller knows the limit)."""
        return (self.status is LetterStatus.PRINTED and self.pin_hash is not None
                and self.valid_until is not None and now < self.valid_until)

    def encode(self) -> bytes:
        def when(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return json.dumps({
            "address": self.address, "key": self.key, "recipient": self.recipient.as_dict(),
            "status": self.status.value, "requested_at": when(self.requested_at),
            "requested_by": self.requested_by, "request_id": self.request_id,
            "reference": self.reference,
            "printed_at": when(self.printed_at), "valid_until": when(self.valid_until),
            "pin_hash": self.pin_hash, "attempts": self.attempts, "used_at": when(self.used_at),
        }, sort_keys=True).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Letter:
        data: dict[str, Any] = json.loads(raw)

        def when(name: str) -> datetime | None:
            value = data.get(name)
            return datetime.fromisoformat(value) if value else None

        requested_at = when("requested_at")
        assert requested_at is not None
        return cls(address=data["address"], key=data["key"],
                   recipient=PostalAddress.from_dict(data["recipient"]),
                   status=LetterStatus(data["status"]), requested_at=requested_at,
                   requested_by=data["requested_by"], request_id=data.get("request_id", ""),
                   reference=data.get("reference"),
                   printed_at=when("printed_at"), valid_until=when("valid_until"),
                   pin_hash=data.get("pin_hash"), attempts=int(data.get("attempts", 0)),
                   used_at=when("used_at"))


class Outcome(enum.StrEnum):
    """What entering a PIN did."""

    CONFIRMED = "confirmed"
    #: Wrong PIN, no usable letter, expired, used or void: one answer for all of them.
    REFUSED = "refused"


@attrs.frozen(kw_only=True)
class Issued:
    """A letter printed with its PIN (the PIN exists only here and on paper)."""

    letter: Letter
    pin: str = attrs.field(repr=False)


class LetterBook:
    """The PIN letters of one tenant."""

    def __init__(self, services: LetterServices, tenant: str, *, valid_days: float = 30.0,
                 max_attempts: int = 5) -> None:
        self.services = services
        self.tenant = tenant
        self.valid = timedelta(days=valid_days)
        self.max_attempts = max_attempts

    @property
    def state(self) -> PluginState:
        return self.services.state(NAMESPACE)

    @property
    def now(self) -> datetime:
        return self.services.clock.now()

    def record_key(self, address: Address) -> str:
        return f"{self.tenant}/{address.key}"

    async def get(self, address: Address) -> Letter | None:
        record = await self.state.get(self.record_key(address))
        return Letter.decode(record.value) if record is not None else None

    async def all(self) -> list[Letter]:
        return [Letter.decode(r.value) for r in await self.state.scan(f"{self.tenant}/")]

    async def pending(self) -> list[Letter]:
        """The letters waiting to be printed, oldest request first."""
        letters = [letter for letter in await self.all() if letter.status is LetterStatus.PENDING]
        return sorted(letters, key=lambda letter: (letter.requested_at, letter.key))

    async def request(self, address: Address, recipient: PostalAddress, *,
                      requested_by: str) -> Letter:
        """Ask for a letter to ``recipient``. A letter not yet used is replaced: its PIN, if it
        was printed, stops working. A used letter is replaced too (the account may need its
        confirmation again after a move)."""
        now = self.now
        letter = Letter(address=str(address), key=address.key, recipient=recipient,
                        status=LetterStatus.PENDING, requested_at=now, requested_by=requested_by,
                        request_id=secrets.token_hex(8))
        await self.state.update(self.record_key(address),
                                lambda _record: (StateWrite(value=letter.encode()), None))
        await self._audit("pin_letter_requested", address, by=requested_by)
        return letter

    async def issue(self, letters: Sequence[Letter]) -> list[Issued]:
        """Give each letter a new PIN and mark it printed; a letter that changed since it was
        read (requested again meanwhile) is left out. Call it once the PDF is ready to be
        written: the PINs are in the returned objects only."""
        issued = []
        for letter in letters:
            pin = new_pin()
            pin_hash = await hash_password(pin)
            now = self.now
            printed = attrs.evolve(
                letter, status=LetterStatus.PRINTED, printed_at=now,
                valid_until=now + self.valid, pin_hash=pin_hash, attempts=0,
                reference=secrets.token_hex(4).upper(), used_at=None)

            def step(record: StateRecord | None, letter: Letter = letter,
                     printed: Letter = printed) -> tuple[StateWrite | None, bool]:
                if record is None or Letter.decode(record.value) != letter:
                    return None, False
                return StateWrite(value=printed.encode()), True

            if await self.state.update(self.record_key(Address.parse(letter.address)), step):
                issued.append(Issued(letter=printed, pin=pin))
        for item in issued:
            await self._audit("pin_letter_printed", Address.parse(item.letter.address),
                              reference=item.letter.reference or "",
                              valid_until=item.letter.valid_until.isoformat()
                              if item.letter.valid_until else "")
        return issued

    async def again(self, address: Address) -> Letter | None:
        """Put a printed (or void) letter back to be printed again: its PIN stops working now."""
        def step(record: StateRecord | None) -> tuple[StateWrite | None, Letter | None]:
            if record is None:
                return None, None
            letter = Letter.decode(record.value)
            if letter.status is LetterStatus.USED:
                return None, None
            pending = attrs.evolve(letter, status=LetterStatus.PENDING, pin_hash=None,
                                   printed_at=None, valid_until=None, attempts=0,
                                   reference=None)
            return StateWrite(value=pending.encode()), pending

        return await self.state.update(self.record_key(address), step)

    async def confirm(self, address: Address, pin: str) -> Outcome:
        """Check ``pin`` against the letter of ``address`` (``pin`` already normalised). On
        success the letter is used up and the account raised to ``confirmed``."""
        key = self.record_key(address)
        now = self.now

        def count(record: StateRecord | None) -> tuple[StateWrite | None, Letter | None]:
            letter = Letter.decode(record.value) if record is not None else None
            if letter is None or not letter.usable(now) or letter.attempts >= self.max_attempts:
                return None, None
            counted = attrs.evolve(letter, attempts=letter.attempts + 1)
            return StateWrite(value=counted.encode()), counted

        counted = await self.state.update(key, count)
        check = await check_password(counted.pin_hash if counted else None, pin)
        if counted is None:
            return Outcome.REFUSED
        if not check.verified:
            if counted.attempts >= self.max_attempts:
                await self._end(key, counted, LetterStatus.VOID)
                await self._audit("pin_letter_void", address, attempts=str(counted.attempts))
            else:
                await self._audit("pin_letter_refused", address, attempts=str(counted.attempts))
            return Outcome.REFUSED
        if not await self._end(key, counted, LetterStatus.USED):
            return Outcome.REFUSED  # used or replaced meanwhile
        await self.services.accounts(self.tenant).raise_level(address, IdentityLevel.CONFIRMED)
        await self._audit("identity_level_raised", address, level=IdentityLevel.CONFIRMED.label,
                          by="pin_letter", reference=counted.reference or "")
        return Outcome.CONFIRMED

    async def _end(self, key: str, counted: Letter, status: LetterStatus) -> bool:
        """Use up or void the letter that was counted, unless it changed since."""
        now = self.now

        def step(record: StateRecord | None) -> tuple[StateWrite | None, bool]:
            current = Letter.decode(record.value) if record is not None else None
            if (current is None or current.pin_hash != counted.pin_hash
                    or current.status is not LetterStatus.PRINTED):
                return None, False
            ended = attrs.evolve(current, status=status, pin_hash=None,
                                 used_at=now if status is LetterStatus.USED else None)
            return StateWrite(value=ended.encode()), True

        return await self.state.update(key, step)

    async def _audit(self, kind: str, address: Address, **detail: str) -> None:
        await self.services.report(self.tenant, events=[AuditEvent(
            at=self.now, kind=kind, tenant=self.tenant, recipient=str(address), detail=detail)])
