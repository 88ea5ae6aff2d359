"""Addresses that route elsewhere, everywhere siegel judges an address: the library entry point,
the pipeline and its classifier, the tenant of a message, and system mails (a real store and SMTP
sink; the listener's answers are in test_explain_matches_gateway.py)."""

from __future__ import annotations

import asyncio
import smtplib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from siegel import Address, InvalidAddress, RecipientState, SystemMail
from siegel.gateway import SmtpGateway
from siegel.testing import make_message

CLERK = "sachbearbeitung@behoerde.example"
ROUTING = ["kunde%gmail.com@behoerde.example", "gmail.com!kunde@behoerde.example",
           '"kunde@gmail.com"@behoerde.example', "kunde\uff05gmail.com@behoerde.example"]
CONFIG = {"settings": {"recipient_scope": {"external": "plain"}}}


@pytest.mark.parametrize("recipient", ROUTING)
async def test_submit_refuses_a_routing_recipient_and_stores_nothing(siegel_harness, recipient):
    async with siegel_harness() as harness:
        with pytest.raises(InvalidAddress, match="routes the mail to another host"):
            await harness.runtime.submit(make_message(to=recipient), CLERK, [recipient])
        assert await harness.store.list() == []


@pytest.mark.parametrize("recipient", ROUTING)
async def test_a_routing_address_that_gets_in_anyway_is_external(siegel_harness, recipient):
    """E.g. a plugin builds the Address itself, or an older siegel stored it: the pipeline judges
    it external, so with external = "protect" it is protected (here: no method, quarantined)."""
    async with siegel_harness() as harness:
        address = Address.load(recipient)
        message_id = await harness.runtime.submit(make_message(to=CLERK), CLERK, [address])
        await harness.process()
        [record] = await harness.store.recipients(message_id)
        assert record.state is RecipientState.QUARANTINED
        assert any("is external" in reason for reason in record.reasons)
        assert harness.sink.to(str(address)) == []


async def test_a_routing_address_does_not_make_a_message_belong_to_a_tenant(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        config = harness.config
        assert config.tenant_of_recipient(Address.load(ROUTING[0])) is None
        assert config.tenant_of_sender(Address.load(ROUTING[0])) is None
        assert config.tenant_of_recipient(Address.parse("kunde@behoerde.example")) is not None


@pytest.mark.parametrize("recipient", ROUTING)
async def test_no_system_mail_goes_to_a_routing_address(siegel_harness, recipient):
    async with siegel_harness() as harness:
        mail = SystemMail(mail_from="", recipients=[recipient], raw=make_message(to=recipient))
        with pytest.raises(InvalidAddress):
            await harness.runtime.send_system_mail("test", mail)
        await harness.process()
        assert harness.sink.messages == []


async def test_the_listener_refuses_every_routing_recipient_at_rcpt(siegel_harness):
    """Hypothesis draws routing local parts (also quoted, also look-alikes) for internal domains;
    a stdlib smtplib client sends them to siegel's own listener, which must answer 553 naming
    the form, while the ordinary colleague in the same transaction is accepted."""
    from test_addresses import routing_local_part

    async with siegel_harness(config={"listeners": [{"host": "127.0.0.1", "port": 0}]}) as harness:
        gateway = SmtpGateway(harness.runtime)
        [(host, port)] = await gateway.start()

        @settings(max_examples=60, deadline=None, derandomize=True)
        @given(local=routing_local_part(),
               domain=st.sampled_from(["behoerde.example", "BEHOERDE.example"]))
        def rcpt(local: str, domain: str) -> None:
            with smtplib.SMTP(host, port, timeout=10) as client:
                client.ehlo()
                assert client.mail(CLERK, ["SMTPUTF8"])[0] == 250
                code, reply = client.rcpt(f"{local}@{domain}")
                assert code == 553, (local, reply)
                assert b"routes the mail to another host" in reply
                assert client.rcpt("kollegin@behoerde.example")[0] == 250
                client.rset()

        try:
            await asyncio.to_thread(rcpt)
        finally:
            await gateway.stop()
        assert await harness.store.list() == []
