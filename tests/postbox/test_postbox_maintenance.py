"""The postbox's maintenance with an injected clock: the expiry warning, expiry (the key is
erased), the bin purged after its days, the sender told about an unopened message, and two
runs at once doing each thing only once."""

from __future__ import annotations

import asyncio

from postbox_helpers import CITIZEN, CLERK, mailbox_of

from siegel import Address, IdentityLevel
from siegel.plugins.postbox import maintenance, records
from siegel.testing import make_message

CONFIG = {"tenants": {"test": {
    "plugin_set": "postbox", "domains": ["behoerde.example"],
    "settings": {"postbox": {"retention_days": 30, "expiry_notice_days": 5, "bin_days": 10,
                             "not_retrieved_days": 7}}}},
    "portal": {"public_base_url": "https://post.behoerde.example"}}
SECRET = "Kundennummer 123A456789"


def mails(harness, kind: str) -> list:
    return [m for m in harness.sink.messages if m.parsed["X-Siegel-Mail"] == f"postbox.{kind}"]


async def test_retention_bin_and_reminders_follow_the_clock(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        tenant = harness.config.tenants["test"]
        box = mailbox_of(harness)
        content = harness.runtime.state(records.CONTENT)
        prefix = records.account_prefix("test", Address.parse(CITIZEN))

        async def deliver(source: str):
            return await box.deliver(make_message(sender=CLERK, to=CITIZEN, body=SECRET),
                                     level=IdentityLevel.MAILBOX, source=source,
                                     envelope_sender=CLERK)

        kept = await deliver("m-kept")
        await deliver("m-unopened")
        binned = await deliver("m-binned")
        await box.mark_read(kept.id)
        await box.mark_read(binned.id)
        await box.move_to_bin(binned.id)

        harness.clock.advance(days=6)
        assert await maintenance.run(harness.runtime, tenant) == dict.fromkeys(
            maintenance.KINDS, 0)
        harness.clock.advance(days=1, seconds=1)
        # Two instances at once: each due record is acted on once.
        first, second = await asyncio.gather(maintenance.run(harness.runtime, tenant),
                                             maintenance.run(harness.runtime, tenant))
        assert first["unretrieved"] + second["unretrieved"] == 1
        await harness.process()
        [not_retrieved] = harness.notices("not-retrieved")
        assert not_retrieved["To"] == CLERK and not_retrieved["X-Siegel-Message-Id"] == "m-unopened"
        assert "Brief" in not_retrieved.get_body(("plain",)).get_content()

        # Restored and deleted again on day 9: its bin days start anew.
        harness.clock.advance(days=2)
        await box.restore(binned.id)
        await box.move_to_bin(binned.id)
        harness.clock.advance(days=1)  # day 10: the first bin days would be over
        assert (await maintenance.run(harness.runtime, tenant))["purge"] == 0
        assert [m.id for m in (await box.page("bin")).messages] == [binned.id]
        harness.clock.advance(days=9)  # day 19: these are over too
        assert (await maintenance.run(harness.runtime, tenant))["purge"] == 1
        assert [m.id for m in (await box.page("bin")).messages] == []
        assert await content.scan(f"{prefix}{binned.id}/") == []

        harness.clock.advance(days=6)  # day 25: five days before expiry
        assert (await maintenance.run(harness.runtime, tenant))["warn"] == 2
        await harness.process()
        [warning] = mails(harness, "expiry")
        assert warning.parsed["To"] == CITIZEN and SECRET.encode() not in warning.raw
        assert " 2 Nachricht" in warning.parsed.get_body(("plain",)).get_content()

        harness.clock.advance(days=5)  # day 30: retention is over, the keys are erased
        # The gateway's own maintenance runs the postbox's task.
        await harness.runtime.maintenance()
        assert (await box.page()).messages == () and await box.unread_count() == 0
        assert await content.scan(prefix) == []
        events = [e.kind for e in await harness.store.events("m-kept")]
        assert "postbox.retrieved" in events and "postbox.expired" in events
        assert await harness.runtime.state(records.DUE).scan("test/") == []
