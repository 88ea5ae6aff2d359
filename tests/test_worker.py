"""The background worker: picks up new mail at once, runs jobs side by side, stops cleanly."""

from __future__ import annotations

import asyncio

from siegel import Classifier, Finding, Level, RecipientState, Text, hookimpl
from siegel.testing import make_message


class SlowFor:
    """Classifies one recipient slowly, the rest at once."""

    def __init__(self, slow_recipient: str) -> None:
        self.slow_recipient = slow_recipient
        self.release = asyncio.Event()

    @hookimpl
    def siegel_register_classifiers(self):
        async def classify(ctx):
            if str(ctx.recipient) == self.slow_recipient:
                await self.release.wait()
            return Finding(level=Level.PLAIN, code="ok", reason=Text("ok", "ok"))
        return [Classifier(name="slow_for", classify=classify)]


async def wait_for_state(harness, message_id, recipient, state, seconds=5.0):
    for _ in range(int(seconds / 0.02)):
        if (await harness.states(message_id)).get(recipient) is state:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{recipient} not {state} after {seconds} s: {await harness.states(message_id)}")


async def test_worker_delivers_new_mail_while_a_slow_job_runs(siegel_harness):
    slow = SlowFor("langsam@behoerde.example")
    config = {"delivery": {"concurrency": 4, "poll_seconds": 30, "classify_timeout_seconds": 30}}
    async with siegel_harness(config=config, plugins=[("slow", slow)]) as harness:
        runtime = harness.runtime
        await runtime.start()
        try:
            first = await harness.send(make_message(to="langsam@behoerde.example"))
            second = await harness.send(make_message(to="schnell@behoerde.example"))
            # poll_seconds is 30: only the wake-up on submit can make this fast.
            await wait_for_state(harness, second, "schnell@behoerde.example",
                                 RecipientState.DELIVERED)
            assert (await harness.states(first))["langsam@behoerde.example"] is (
                RecipientState.ACCEPTED)
            slow.release.set()
            await wait_for_state(harness, first, "langsam@behoerde.example",
                                 RecipientState.DELIVERED)
        finally:
            await runtime.stop()


async def test_stop_lets_running_jobs_finish(siegel_harness):
    slow = SlowFor("langsam@behoerde.example")
    config = {"delivery": {"classify_timeout_seconds": 30}}
    async with siegel_harness(config=config, plugins=[("slow", slow)]) as harness:
        await harness.runtime.start()
        message_id = await harness.send(make_message(to="langsam@behoerde.example"))
        await asyncio.sleep(0.2)
        asyncio.get_running_loop().call_later(0.2, slow.release.set)
        await harness.runtime.stop(grace_seconds=5)
        await harness.store.open()
        assert (await harness.states(message_id))["langsam@behoerde.example"] is (
            RecipientState.DELIVERED)


class CountingEvent(asyncio.Event):
    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    async def wait(self) -> bool:
        self.waits += 1
        return await super().wait()


async def test_worker_sleeps_while_every_slot_is_busy(siegel_harness):
    """With all slots taken, the worker waits for a job to end instead of spinning on the CPU."""
    slow = SlowFor("langsam@behoerde.example")
    config = {"delivery": {"concurrency": 1, "poll_seconds": 30, "classify_timeout_seconds": 30}}
    async with siegel_harness(config=config, plugins=[("slow", slow)]) as harness:
        runtime = harness.runtime
        runtime._wake = wake = CountingEvent()
        await runtime.start()
        try:
            message_id = await harness.send(make_message(to="langsam@behoerde.example"))
            await asyncio.sleep(0.2)
            waiting = await harness.send(make_message(to="schnell@behoerde.example"))
            await asyncio.sleep(0.5)
            # The slot is busy: the worker woke for each submit and then waits (a spinning loop
            # wakes thousands of times in half a second).
            assert wake.waits < 10
            assert (await harness.states(waiting))["schnell@behoerde.example"] is (
                RecipientState.ACCEPTED)
            slow.release.set()
            await wait_for_state(harness, message_id, "langsam@behoerde.example",
                                 RecipientState.DELIVERED)
        finally:
            await runtime.stop()
