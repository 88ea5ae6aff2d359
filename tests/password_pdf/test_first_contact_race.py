"""Many first-contact messages for one new recipient at once: none is quarantined, all are held
for the one registration, and one invitation goes out."""

from __future__ import annotations

from siegel import RecipientState
from siegel.testing import make_message

CITIZEN = "neu@example.net"
CONFIG = {"tenants": {"test": {"plugin_set": "district", "domains": ["behoerde.example"]}},
          "portal": {"public_base_url": "https://post.behoerde.example"},
          "delivery": {"concurrency": 20}}


async def test_twenty_concurrent_first_contact_messages_are_all_held(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        ids = [await harness.send(make_message(
            to=CITIZEN, subject=f"Bescheid {i}", body="Ihre Kundennummer 123A456789\n"))
            for i in range(20)]
        # All twenty are claimed together and run side by side.
        assert await harness.runtime.run_due() == 20
        await harness.process()
        states = {i: (await harness.states(i))[CITIZEN] for i in ids}
        assert set(states.values()) == {RecipientState.HELD}, {
            i: (s, [r.detail for r in await harness.store.recipients(i)])
            for i, s in states.items() if s is not RecipientState.HELD}
        invitations = [m for m in harness.sink.to(CITIZEN)
                       if m.parsed.get("X-Siegel-Mail") == "password_pdf.invitation"]
        assert len(invitations) == 1
