"""The moment a copy passes to the receiving side, recorded, and one such moment in doubt at a time.

A delivery channel that hands a copy to a system outside siegel (the SMTP relay: the final dot of
DATA) cannot take it back, and the outcome is committed only after the other side answers. A
crash between the two leaves the copy in doubt: the next processing start cannot tell whether the
other side has it, and sends it again rather than lose it. Around that moment a channel enters
:func:`handoff`:

* the attempt is recorded in the store first (:meth:`MessageStore.record_handoff`), so that a later
  start knows the copy is in doubt (:attr:`Job.handoffs`) and says so in its ``delivered`` event
  (``possible_duplicate``): duplicates are counted, not guessed;
* the instance's *handoff gate* is taken and kept until the runtime has committed the copy's
  outcome. Everything before the final moment (classifying, protecting, the envelope, the
  content) still runs for many copies at once; only "hand over, hear the answer, commit" runs for
  one copy at a time per instance. So a crash of an instance leaves at most one copy in doubt,
  and a crash causes at most one duplicate. While the store is away (a database restart) the
  holder keeps retrying its commit and no further copy is handed over meanwhile, which is the
  point: nothing piles up in doubt.

Outside a job of the runtime (a channel called from a test, say) :func:`handoff` does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from siegel.store import Job, MessageStore


class HandoffNotRecorded(Exception):
    """The attempt could not be recorded (the lease is gone): the copy must not be handed over."""


class HandoffGate:
    """One per runtime (instance): the copies of this instance that are in doubt, at most one."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    def for_job(self, store: MessageStore, job: Job) -> JobHandoff:
        return JobHandoff(self._lock, store, job)


class JobHandoff:
    """A job's share of the gate: taken at the first handoff, given back by :meth:`release`."""

    def __init__(self, lock: asyncio.Lock, store: MessageStore, job: Job) -> None:
        self._lock = lock
        self._store = store
        self._job = job
        self.holding = False

    async def enter(self) -> None:
        if not self.holding:
            await self._lock.acquire()
            self.holding = True
        try:
            recorded = await self._store.record_handoff(self._job)
        except BaseException:
            self.release()
            raise
        if not recorded:
            self.release()
            raise HandoffNotRecorded(
                f"message {self._job.message_id} to {self._job.recipient}: lease lost")

    def release(self) -> None:
        if self.holding:
            self.holding = False
            self._lock.release()


_current: contextvars.ContextVar[JobHandoff | None] = contextvars.ContextVar(
    "siegel_handoff", default=None)


@contextlib.contextmanager
def processing(handoff: JobHandoff) -> Iterator[None]:
    """The runtime's side: ``handoff`` is the current job's while the block runs (its tasks
    inherit it); the gate is given back when the block ends, after the outcome is committed."""
    token = _current.set(handoff)
    try:
        yield
    finally:
        _current.reset(token)
        handoff.release()


@contextlib.asynccontextmanager
async def handoff() -> AsyncIterator[None]:
    """Enter just before the copy passes to the other side (the SMTP relay's final dot).

    Records the attempt and takes the instance's handoff gate, which stays taken after the block
    until the runtime has committed the outcome (see the module's description). Raises
    :class:`HandoffNotRecorded` or :class:`siegel.StoreError` when the attempt cannot be
    recorded: then the copy must not be handed over (a temporary failure: it is tried again)."""
    current = _current.get()
    if current is not None:
        await current.enter()
    yield
