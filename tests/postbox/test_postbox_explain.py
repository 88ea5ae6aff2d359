"""``siegel explain`` tells which method serves whom, with and without a store to read accounts."""

from __future__ import annotations

from postbox_helpers import CITIZEN, CLERK, CONFIG, OTHER, PASSWORD

from siegel import Address
from siegel.explain import DryRun, as_text, explain
from siegel.testing import make_message


async def test_explain_names_the_postbox_and_why(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        await harness.runtime.accounts("test").set_password(Address.parse(CITIZEN), PASSWORD)
        raw = make_message(sender=CLERK, to=[CITIZEN, OTHER], body="Ihr Bescheid")
        recipients = [Address.parse(CITIZEN), Address.parse(OTHER)]
        with_store = await explain(harness.config, harness.registry, raw, Address.parse(CLERK),
                                   recipients, services=DryRun(store=harness.store,
                                                               config=harness.config))
        reasons = {str(r.recipient): (r.outcome, r.choice.tried[0][1].reason.en)
                   for r in with_store.recipients}
        assert reasons == {
            CITIZEN: ("protect with postbox", "into the recipient account's postbox"),
            OTHER: ("protect with postbox",
                    "into the postbox, after registration (invitation on first contact)")}
        # Without a store the method still answers, in general terms.
        bare = await explain(harness.config, harness.registry, raw, Address.parse(CLERK),
                             recipients)
        assert {r.choice.tried[0][1].reason.en for r in bare.recipients} == {
            "into the postbox (held on first contact until the recipient registers)"}
        assert "ins Postfach des Empfängerkontos" in as_text(with_store, "de")
