"""``Services.submit_portal_message``: what a recipient writes on the portal goes through the
whole pipeline (origin ``portal``), and its outside sender is never sent notice mails."""

from __future__ import annotations

from siegel import Address, Origin
from siegel.testing import HarnessFactory, make_message


async def test_a_portal_message_is_classified_and_delivered(siegel_harness: HarnessFactory) -> None:
    async with siegel_harness() as harness:
        raw = make_message(sender="buerger@example.net", to="sachbearbeitung@behoerde.example",
                           subject="Re: Ihr Bescheid", body="Danke.\n")
        message_id = await harness.runtime.submit_portal_message(
            "test", raw, mail_from=Address.parse("buerger@example.net"),
            recipients=[Address.parse("sachbearbeitung@behoerde.example")])
        stored = await harness.store.load(message_id)
        assert stored.origin is Origin.PORTAL
        await harness.process()
        assert await harness.states(message_id) == {"sachbearbeitung@behoerde.example":
                                                    "delivered"}
        [mail] = harness.sink.to("sachbearbeitung@behoerde.example")
        assert b"Danke." in mail.raw

