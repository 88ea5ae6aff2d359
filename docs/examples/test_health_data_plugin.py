"""Tests of the health_data plugin: real pipeline, real SMTP sink (siegel.testing)."""

from __future__ import annotations

import health_data_plugin
import pytest

from siegel import ConfigError, RecipientState
from siegel.testing import make_message

PLUGIN = ("health_data", health_data_plugin)
CITIZEN = "buerger@example.net"
COLLEAGUE = "kollegin@behoerde.example"
# The harness's tenant uses the "baseline" set, in which every external recipient needs
# protection by itself. Let plain external mail through, so that only this plugin decides.
PLAIN_OUTSIDE = {"settings": {"recipient_scope": {"external": "plain"}}}


async def test_external_copy_is_quarantined_and_the_sender_told(siegel_harness):
    raw = make_message(to=CITIZEN, subject="Ihre Unterlagen", body="Anbei Ihre Gesundheitsdaten.\n")
    async with siegel_harness(config=PLAIN_OUTSIDE, plugins=[PLUGIN]) as harness:
        message_id = await harness.send(raw)
        await harness.process()
        assert await harness.states(message_id) == {CITIZEN: RecipientState.QUARANTINED}
        [record] = await harness.store.recipients(message_id)
    assert "health data ('Gesundheitsdaten') to external recipients only after review" in (
        record.reasons)
    assert harness.sink.to(CITIZEN) == []
    [notice] = harness.notices("quarantined")
    assert "Gesundheitsdaten ('Gesundheitsdaten') an externe Empfänger" in notice.get_content()


async def test_other_external_mail_leaves_unchanged(siegel_harness):
    raw = make_message(to=CITIZEN, body="Ihr Termin ist am Montag.\n")
    async with siegel_harness(config=PLAIN_OUTSIDE, plugins=[PLUGIN]) as harness:
        message_id = await harness.send(raw)
        await harness.process()
        assert await harness.states(message_id) == {CITIZEN: RecipientState.DELIVERED}
    [received] = harness.sink.to(CITIZEN)
    assert received.raw == raw


async def test_internal_copy_is_delivered_marked_private(siegel_harness):
    raw = make_message(to=COLLEAGUE, body="Die Gesundheitsdaten liegen bei.\n")
    async with siegel_harness(plugins=[PLUGIN]) as harness:
        message_id = await harness.send(raw)
        await harness.process()
        assert await harness.states(message_id) == {COLLEAGUE: RecipientState.DELIVERED}
    [received] = harness.sink.to(COLLEAGUE)
    assert received.parsed["Sensitivity"] == "Private"


async def test_a_tenant_chooses_its_own_keywords(siegel_harness):
    config = {**PLAIN_OUTSIDE, "tenants": {"test": {"settings": {
        "health_data": {"keywords": ["Befund"], "mark_internal": False}}}}}
    async with siegel_harness(config=config, plugins=[PLUGIN]) as harness:
        ordinary = await harness.send(make_message(to=CITIZEN, body="Gesundheitsdaten\n"))
        finding = await harness.send(make_message(to=CITIZEN, body="Der Befund liegt vor.\n"))
        await harness.process()
        assert await harness.states(ordinary) == {CITIZEN: RecipientState.DELIVERED}
        assert await harness.states(finding) == {CITIZEN: RecipientState.QUARANTINED}


async def test_an_empty_keyword_is_a_configuration_error(siegel_harness):
    config = {"settings": {"health_data": {"keywords": ["Befund", " "]}}}
    with pytest.raises(ConfigError, match=r"tenants\.test\.settings\.health_data\.keywords: "):
        async with siegel_harness(config=config, plugins=[PLUGIN]):
            pass
