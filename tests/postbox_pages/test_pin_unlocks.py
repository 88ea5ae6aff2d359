"""A PIN letter unlocks a postbox message that needs a confirmed account: a classifier's
finding asks for the level, the message page says why and links to the PIN letter pages; the
account holder requests a letter, it is printed, the PIN is entered and the message opens."""

from __future__ import annotations

import re
from typing import Any

from pages_helpers import CLERK, ERIKA, Postbox, message_links

from siegel import Classifier, Finding, IdentityLevel, Level, Text, hookimpl
from siegel.plugins.pin_letters.letters import LetterBook
from siegel.portal import PortalSettings, create_app
from siegel.testing import make_message

CONFIG = {"tenants": {"test": {"plugin_set": "postbox", "plugins": ["pin_letters"]}}}
ADDRESS = {"name": "Erika Mustermann", "supplement": "", "street": "Heidestraße 17",
           "postcode": "51147", "city": "Köln"}


class Decisions:
    """Decisions ("Bescheid") need a confirmed account; other mail the tenant's level."""

    @hookimpl
    def siegel_register_classifiers(self) -> list[Classifier]:
        async def classify(ctx: Any) -> Finding | None:
            if "Bescheid" not in ctx.subject:
                return None
            return Finding(level=Level.PROTECT, code="decision",
                           reason=Text(de="Bescheid", en="decision"),
                           identity_level=IdentityLevel.CONFIRMED)
        return [Classifier(name="decisions", classify=classify)]


async def test_the_pin_unlocks_a_message_that_needs_a_confirmed_account(siegel_harness):
    async with siegel_harness(config=CONFIG, plugins=[("decisions", Decisions())]) as harness:
        pb = Postbox(harness, create_app(harness.runtime, settings=PortalSettings()), [])
        await pb.account(ERIKA)
        for subject in ("Ihr Termin", "Ihr Bescheid vom 3. Dezember"):  # the inbox: newest first
            await harness.send(make_message(sender=CLERK, to=ERIKA, subject=subject),
                               mail_from=CLERK, rcpt_to=[ERIKA])
            await harness.process()
            harness.clock.advance(minutes=1)
        async with pb.visitor() as erika:
            await erika.sign_in()
            decision, appointment = message_links((await erika.client.get("/t/test/postbox")).text)
            assert (await erika.client.get(appointment)).status_code == 200
            blocked = await erika.client.get(decision)
            assert blocked.status_code == 403
            assert 'href="/t/test/pin-letter"' in blocked.text
            assert 'href="/t/test/pin-letter/confirm"' in blocked.text

            assert (await erika.post("/t/test/pin-letter", ADDRESS)).status_code == 303
            book = LetterBook(harness.runtime, "test")
            [issued] = await book.issue(await book.pending())
            page = await erika.client.get("/t/test/pin-letter/confirm")
            assert re.search(r"gedruckt", page.text)
            response = await erika.post("/t/test/pin-letter/confirm", {"pin": issued.pin})
            assert response.status_code == 303
            opened = await erika.client.get(decision)
            assert opened.status_code == 200 and "Ihr Bescheid vom 3. Dezember" in opened.text
