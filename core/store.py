"""The durable message store: the interface every backend implements, and the records it returns.

Invariants every backend keeps:

* :meth:`MessageStore.accept` returns only after the message is committed and on disk (the SMTP
  listener answers 250 after it returns, never before).
* Content is sealed with :class:`siegel.crypto.ContentCipher` before it reaches the backend.
* A recipient's state change and the notices it causes are written in one transaction
  (:meth:`MessageStore.finish`), so a crash never loses a notice nor repeats a delivery decision.
* Claimed jobs carry a lease; a job whose worker died becomes due again when the lease runs out.
"""

from __future__ import annotations

import abc
import builtins
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from datetime import datetime
from typing import TypeVar

import attrs

from siegel.addresses import Address
from siegel.model import AuditEvent, Level, Message, Origin, RecipientState


class StoreError(Exception):
    """The store could not do what was asked (disk full, database locked, ...)."""


class MessageNotFound(StoreError):
    pass


class ContentDestroyed(StoreError):
    """The message's content was destroyed (expired or purged); only its record is left."""


class StateConflict(StoreError):
    """A plugin-state record changed since it was read (optimistic concurrency)."""


class LeaseLost(StoreError):
    """Another worker took the job over (this worker was too slow); its result is discarded."""


@attrs.frozen(kw_only=True)
class Job:
    """One recipient's copy, claimed by a worker for processing."""

    message_id: str
    recipient: Address
    state: RecipientState
    attempts: int
    released: bool
    lease: str
    received_at: datetime
    hold_until: datetime | None = None
    #: Processing starts of this copy that have not finished, this one included: more than one
    #: means earlier ones were cut off (the process crashed, hung or was stopped meanwhile).
    starts: int = 1
    #: The protection method's :class:`~siegel.RetryLater` answers for this copy in a row.
    protect_retries: int = 0
    #: Handoffs to the receiving side (:func:`siegel.handoff`) by earlier processing starts whose
    #: outcome was never recorded: more than zero means the copy may already be there (a crash
    #: came between the handoff and the commit), so delivering it again may duplicate it. It
    #: stays until the copy is final (a later retry's outcome says nothing about that handoff).
    handoffs: int = 0


def _strings(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(values)


@attrs.frozen(kw_only=True)
class RecipientUpdate:
    """What processing decided for one recipient."""

    state: RecipientState
    detail: str
    reasons: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    level: Level | None = None
    method: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    hold_until: datetime | None = None
    #: :attr:`Job.protect_retries` after this step (any other outcome than "retry later": 0).
    protect_retries: int = 0


@attrs.frozen(kw_only=True)
class RecipientRecord:
    message_id: str
    tenant: str
    origin: Origin
    mail_from: str
    recipient: str
    received_at: datetime
    size: int
    state: RecipientState
    attempts: int
    next_attempt_at: datetime | None
    hold_until: datetime | None
    released: bool
    level: Level | None
    method: str | None
    reasons: tuple[str, ...]
    detail: str
    updated_at: datetime
    content_destroyed: bool
    #: Processing starts that have not finished (see :attr:`Job.starts`).
    starts: int = 0


@attrs.frozen(kw_only=True)
class StateRecord:
    namespace: str
    key: str
    value: bytes = attrs.field(repr=False)
    version: int
    updated_at: datetime
    expires_at: datetime | None


@attrs.frozen(kw_only=True)
class StateWrite:
    """What :meth:`MessageStore.state_update` writes back."""

    value: bytes = attrs.field(repr=False)
    expires_at: datetime | None = None


_R = TypeVar("_R")

#: A read-modify-write step: gets the current record (``None``: absent, or expired when a time
#: is given) and returns what to write (``None``: leave it) and a result for the caller.
StateUpdate = Callable[[StateRecord | None], tuple[StateWrite | None, _R]]


def prefix_end(prefix: str) -> str | None:
    """The least key above every key that starts with ``prefix`` (``None``: there is none, the
    range is open upwards), so that "starts with" becomes the index range
    ``prefix <= key < prefix_end(prefix)``. Keys compare by code point, which is the byte order
    of their UTF-8 (SQLite's and PostgreSQL's ``C`` collation)."""
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be stored: the next one is U+E000
            code = 0xE000
        if code <= 0x10FFFF:
            return "".join(chars) + chr(code)
    return None


class MessageStore(abc.ABC):
    """What the pipeline, the listener and the CLI need from a store backend."""

    async def __aenter__(self) -> MessageStore:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @abc.abstractmethod
    async def open(self) -> None:
        """Create the schema if needed. Any process may open a store (the CLI does)."""

    @abc.abstractmethod
    async def migrate(self) -> tuple[int, int]:
        """Bring the schema to the version this siegel writes (creating it if the store is
        empty); returns the versions before and after. :meth:`open` refuses a schema that is
        older or newer than that (``siegel store migrate`` runs this)."""

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[bool]:
        """Run a block on one process at a time among those sharing the store (maintenance):
        yields False when another holds ``name`` (the block should then skip its work). A store
        served by one process only always yields True."""
        yield True

    @abc.abstractmethod
    async def take_over(self) -> None:
        """Called once by a process that will process jobs (``siegel serve``), after :meth:`open`.

        A backend for a single serving process makes sure no other one serves the store and
        voids the leases a crashed predecessor left; a shared backend lets leases run out."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def accept(self, message: Message, events: Sequence[AuditEvent] = ()) -> None:
        """Store a new message with every envelope recipient ``accepted`` (and its audit events);
        durable on return."""

    @abc.abstractmethod
    async def load(self, message_id: str) -> Message:
        """The message with its content decrypted."""

    @abc.abstractmethod
    async def claim_due(self, now: datetime, limit: int, lease_seconds: float) -> list[Job]:
        """Claim up to ``limit`` jobs: accepted copies due now, and held copies past their hold.

        Each claim counts a processing start of the copy durably (:attr:`Job.starts`);
        :meth:`finish` and :meth:`requeue` reset the count."""

    @abc.abstractmethod
    async def record_handoff(self, job: Job) -> bool:
        """Record that a claimed job's copy is about to pass to the receiving side (see
        :mod:`siegel.handoffs`); :meth:`finish` resets it once the copy is final. False if the
        lease is gone. The record has to survive a crash of this process, not of the database
        server (that loses the open sessions anyway), so backends may commit it without waiting
        for the disk."""

    @abc.abstractmethod
    async def renew_lease(self, job: Job, until: datetime) -> bool:
        """Extend a claimed job's lease (its worker is alive and still at it). False if the
        lease is gone (another worker took the job over, or it finished)."""

    @abc.abstractmethod
    async def finish(
        self,
        job: Job,
        update: RecipientUpdate,
        *,
        now: datetime,
        new_messages: Sequence[Message] = (),
        events: Sequence[AuditEvent] = (),
    ) -> None:
        """Record the outcome of a claimed job, store the messages it caused (notices) and its
        audit events, all in one transaction. Raises :class:`LeaseLost` if the lease is gone."""

    @abc.abstractmethod
    async def requeue(
        self,
        message_id: str,
        *,
        recipients: Iterable[str] | None,
        states: Iterable[RecipientState],
        release: bool,
        now: datetime,
    ) -> int:
        """Make copies in ``states`` due now (``release`` marks them as released by a person).
        Returns how many copies were requeued."""

    @abc.abstractmethod
    async def end_hold(self, message_id: str, recipient: str, now: datetime) -> bool:
        """Make a held copy's hold end now, so the worker takes it up at once (as when it
        expires; the pipeline then decides how it ends). False if the copy is not held."""

    @abc.abstractmethod
    async def recipients(self, message_id: str) -> list[RecipientRecord]: ...

    @abc.abstractmethod
    async def list(
        self,
        *,
        states: Iterable[RecipientState] | None = None,
        tenant: str | None = None,
        limit: int = 100,
        recipient: str | None = None,
    ) -> builtins.list[RecipientRecord]: ...

    @abc.abstractmethod
    async def purge(self, message_id: str) -> bool:
        """Delete a message, its copies and its content (its audit events stay)."""

    @abc.abstractmethod
    async def destroy_finished_content(self, older_than: datetime) -> int:
        """Destroy the content of messages whose every copy is final since before ``older_than``."""

    @abc.abstractmethod
    async def record_events(self, events: Sequence[AuditEvent]) -> None: ...

    # -- plugin state: small records a plugin keeps (accounts, certificates, tokens) ------------

    @abc.abstractmethod
    async def state_get(self, namespace: str, key: str) -> StateRecord | None: ...

    @abc.abstractmethod
    async def state_put(self, namespace: str, key: str, value: bytes, *,
                        expires_at: datetime | None = None,
                        expect_version: int | None = None) -> int:
        """Write a record; returns its new version. With ``expect_version`` the write happens
        only if the stored version still matches (0: only if absent); otherwise
        :class:`StateConflict` is raised. Values are encrypted at rest."""

    async def state_update(self, namespace: str, key: str, update: StateUpdate[_R], *,
                           now: datetime | None = None) -> _R:
        """Read a record, let ``update`` decide, write its answer: as one atomic step, so that
        no other writer comes between the read and the write (a counter that must not pass a
        limit under parallel requests). ``update`` must be quick and free of side effects; it
        may be called more than once. This default retries on :class:`StateConflict`;
        backends with transactions do it in one."""
        for _attempt in range(1000):
            record = await self.state_get(namespace, key)
            version = record.version if record is not None else 0
            if record is not None and now is not None and record.expires_at is not None and (
                    record.expires_at <= now):
                record = None
            write, result = update(record)
            if write is None:
                return result
            try:
                await self.state_put(namespace, key, write.value, expires_at=write.expires_at,
                                     expect_version=version)
            except StateConflict:
                continue
            return result
        raise StateConflict(f"{namespace}/{key} keeps changing")

    @abc.abstractmethod
    async def state_delete(self, namespace: str, key: str) -> bool: ...

    @abc.abstractmethod
    async def state_scan(self, namespace: str, prefix: str = "", *,
                         now: datetime | None = None) -> builtins.list[StateRecord]:
        """Records whose key starts with ``prefix``; with ``now``, expired ones are left out."""

    @abc.abstractmethod
    async def state_page(self, namespace: str, prefix: str, *, limit: int,
                         after: str | None = None, descending: bool = False,
                         now: datetime | None = None) -> builtins.list[StateRecord]:
        """At most ``limit`` records whose key starts with ``prefix``, in key order (``descending``:
        reversed), beginning after the key ``after`` (before it, when descending); with ``now``,
        expired ones are left out. Backends answer from the key index (a range, never a full
        scan), so a page costs the same whether the store holds a thousand records or millions."""

    @abc.abstractmethod
    async def state_count(self, namespace: str, prefix: str, *,
                          now: datetime | None = None) -> int:
        """How many records have a key that starts with ``prefix`` (with ``now``: unexpired);
        counted from the key index like :meth:`state_page`."""

    @abc.abstractmethod
    async def state_purge_expired(self, now: datetime) -> int: ...

    @abc.abstractmethod
    async def events(self, message_id: str) -> builtins.list[AuditEvent]: ...
