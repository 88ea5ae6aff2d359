"""The handoff to the relay (siegel.handoff): recorded before the final dot, one copy in doubt
per instance at a time, and a copy delivered again after a crash in between is counted as a
possible duplicate."""

from __future__ import annotations

import asyncio

import pytest

from siegel.model import RecipientState
from siegel.store import StoreError
from siegel.testing import make_message

SENDER = "sachbearbeitung@behoerde.example"
COLLEAGUE = "kollegin@behoerde.example"


async def wait_for(condition, seconds: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_no_second_copy_is_handed_over_before_the_first_is_committed(
        siegel_harness, smtp_sink, monkeypatch):
    async with siegel_harness() as harness:
        first = await harness.send(make_message(sender=SENDER, to=COLLEAGUE, subject="eins"))
        second = await harness.send(make_message(sender=SENDER, to=COLLEAGUE, subject="zwei"))
        store = harness.runtime.store
        commit = asyncio.Event()
        finishing: list[str] = []
        real_finish = store.finish

        async def slow_finish(job, update, **kwargs):
            finishing.append(job.message_id)
            await commit.wait()
            await real_finish(job, update, **kwargs)

        monkeypatch.setattr(store, "finish", slow_finish)
        running = asyncio.create_task(harness.runtime.run_due())
        await wait_for(lambda: len(smtp_sink.messages) == 1 and finishing)
        # The other copy has been through everything but its final dot, which waits for the
        # first copy's outcome to be committed.
        await asyncio.sleep(0.5)
        assert len(smtp_sink.messages) == 1 and len(finishing) == 1
        commit.set()
        await running
        assert len(smtp_sink.messages) == 2
        for message_id in (first, second):
            assert await harness.states(message_id) == {COLLEAGUE: RecipientState.DELIVERED}
            [record] = await store.recipients(message_id)
            assert record.state is RecipientState.DELIVERED


class Crash(Exception):
    """Stands for the process dying between the relay's 250 and the commit."""


async def test_a_copy_handed_over_before_a_crash_is_sent_again_and_counted(
        siegel_harness, smtp_sink, monkeypatch):
    async with siegel_harness() as harness:
        message_id = await harness.send(make_message(sender=SENDER, to=COLLEAGUE))
        store = harness.runtime.store
        real_finish = store.finish

        async def crash(job, update, **kwargs):
            raise Crash

        monkeypatch.setattr(store, "finish", crash)
        with pytest.raises(Crash):
            await harness.runtime.run_due()
        assert len(smtp_sink.messages) == 1
        monkeypatch.setattr(store, "finish", real_finish)
        # The lease of the dead worker runs out; the copy is taken over, in doubt.
        harness.clock.advance(seconds=harness.config.delivery.lease_seconds + 1)
        [job] = await store.claim_due(harness.clock.now(), 10, 60)
        assert (job.starts, job.handoffs) == (2, 1)
        await harness.runtime.process(job)
        assert len(smtp_sink.messages) == 2
        [delivered] = [e for e in await store.events(message_id) if e.kind == "delivered"]
        assert delivered.detail.get("possible_duplicate") == "yes"


async def test_a_copy_whose_handoff_cannot_be_recorded_is_not_handed_over(
        siegel_harness, smtp_sink, monkeypatch):
    async with siegel_harness() as harness:
        message_id = await harness.send(make_message(sender=SENDER, to=COLLEAGUE))
        store = harness.runtime.store

        async def unreachable(job):
            raise StoreError("database unreachable")

        monkeypatch.setattr(store, "record_handoff", unreachable)
        await harness.runtime.run_due()
        assert smtp_sink.messages == []
        [record] = await store.recipients(message_id)
        assert record.state is RecipientState.ACCEPTED and record.attempts == 1
        monkeypatch.undo()
        harness.clock.advance(hours=2)
        await harness.process()
        assert len(smtp_sink.messages) == 1
        [delivered] = [e for e in await store.events(message_id) if e.kind == "delivered"]
        assert "possible_duplicate" not in delivered.detail
