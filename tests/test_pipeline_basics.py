"""The pipeline over a real SMTP sink: plain, protected, quarantined, rewritten."""

from __future__ import annotations

from siegel import RecipientState
from siegel.testing import make_message

SENDER = "sachbearbeitung@behoerde.example"


async def test_internal_mail_arrives_byte_for_byte(siegel_harness):
    raw = make_message(to="kollegin@behoerde.example", body="Grüße aus dem Amt\n")
    async with siegel_harness() as harness:
        message_id = await harness.send(raw)
        await harness.process()
        assert await harness.states(message_id) == {
            "kollegin@behoerde.example": RecipientState.DELIVERED}
    [received] = harness.sink.to("kollegin@behoerde.example")
    assert received.raw == raw
    assert received.mail_from == SENDER


async def test_external_mail_without_protection_method_is_quarantined_and_sender_told(
        siegel_harness):
    raw = make_message(to="buerger@example.net", subject="Bescheid", body="GEHEIMER INHALT\n")
    async with siegel_harness() as harness:
        message_id = await harness.send(raw)
        await harness.process()
        assert await harness.states(message_id) == {
            "buerger@example.net": RecipientState.QUARANTINED}
    assert harness.sink.to("buerger@example.net") == []
    [notice] = harness.notices("quarantined")
    assert notice["To"] == SENDER
    text = notice.get_content()
    assert "angehalten" in text and "stopped" in text
    assert "Kein Schutzverfahren" in text
    assert "GEHEIMER INHALT" not in text
    assert all(b"GEHEIMER INHALT" not in m.raw for m in harness.sink.messages)


async def test_trigger_header_and_subject_tag_are_removed_before_delivery(siegel_harness):
    raw = make_message(to="kollegin@behoerde.example", subject="[secure] Antrag Müller",
                       headers={"X-Siegel-Encrypt": "yes", "X-Other": "kept"})
    async with siegel_harness() as harness:
        await harness.send(raw)
        await harness.process()
    [received] = harness.sink.to("kollegin@behoerde.example")
    parsed = received.parsed
    assert parsed["Subject"] == "Antrag Müller"
    assert "X-Siegel-Encrypt" not in parsed
    assert parsed["X-Other"] == "kept"
    # Everything else is untouched, byte for byte.
    assert received.raw.split(b"\r\n\r\n", 1)[1] == raw.split(b"\r\n\r\n", 1)[1]
    assert b"Message-ID:" in received.raw


async def test_temporary_relay_failure_is_retried_with_backoff(siegel_harness):
    raw = make_message(to="kollegin@behoerde.example")
    async with siegel_harness() as harness:
        harness.sink.data_reply = "451 4.3.0 Mailbox busy"
        message_id = await harness.send(raw)
        await harness.process()
        [record] = await harness.store.recipients(message_id)
        assert record.state is RecipientState.ACCEPTED
        assert record.attempts == 1
        assert "451" in record.detail
        first_retry = record.next_attempt_at
        assert 54 <= (first_retry - harness.clock.now()).total_seconds() <= 66
        harness.clock.advance(seconds=30)
        await harness.process()
        assert (await harness.store.recipients(message_id))[0].attempts == 1  # not due yet
        harness.clock.advance(seconds=40)
        await harness.process()
        [record] = await harness.store.recipients(message_id)
        assert record.attempts == 2
        assert 108 <= (record.next_attempt_at - harness.clock.now()).total_seconds() <= 132
        harness.sink.data_reply = None
        harness.clock.advance(minutes=3)
        await harness.process()
        assert (await harness.states(message_id)) == {
            "kollegin@behoerde.example": RecipientState.DELIVERED}
    assert len(harness.sink.to("kollegin@behoerde.example")) == 1


async def test_permanent_failure_ends_in_a_notice(siegel_harness):
    raw = make_message(to="unbekannt@behoerde.example")
    async with siegel_harness() as harness:
        harness.sink.rcpt_reply = lambda rcpt: "550 5.1.1 no such user" if "unbekannt" in rcpt else None
        message_id = await harness.send(raw)
        await harness.process()
        [record] = await harness.store.recipients(message_id)
        assert record.state is RecipientState.FAILED
        assert "550 5.1.1" in record.detail
    [notice] = harness.notices("undeliverable")
    assert notice["To"] == SENDER
    assert "nicht zustellbar" in notice["Subject"]
    assert "550 5.1.1" in notice.get_content()


async def test_notices_go_only_to_internal_senders(siegel_harness):
    # Inbound mail from outside to an unknown internal mailbox: no backscatter to the outside.
    raw = make_message(sender="fremd@example.org", to="unbekannt@behoerde.example")
    async with siegel_harness() as harness:
        harness.sink.rcpt_reply = lambda rcpt: "550 5.1.1 no such user"
        message_id = await harness.send(raw, mail_from="fremd@example.org",
                                        rcpt_to=["unbekannt@behoerde.example"])
        await harness.process()
        assert (await harness.states(message_id))["unbekannt@behoerde.example"] is (
            RecipientState.FAILED)
    assert harness.notices() == []


async def test_fit_for_email_warning_reaches_the_sender_and_mail_goes_on(siegel_harness):
    config = {"settings": {"fit_for_email": {"phrases": ["Rechtsfolgenbelehrung"]},
                           "recipient_scope": {"external": "plain"}}}
    raw = make_message(to="buerger@example.net", body="Anbei die Rechtsfolgenbelehrung.\n")
    async with siegel_harness(config=config) as harness:
        message_id = await harness.send(raw)
        await harness.process()
        assert (await harness.states(message_id))["buerger@example.net"] is (
            RecipientState.DELIVERED)
    [warning] = harness.notices("warning")
    assert "Rechtsfolgenbelehrung" in warning.get_content()


async def test_fit_for_email_hold_quarantines_and_release_delivers(siegel_harness):
    config = {"settings": {"fit_for_email": {"phrases": ["Rechtsfolgenbelehrung"],
                                             "action": "hold"},
                           "recipient_scope": {"external": "plain"}}}
    raw = make_message(to="buerger@example.net", body="Anbei die Rechtsfolgenbelehrung.\n")
    async with siegel_harness(config=config) as harness:
        message_id = await harness.send(raw)
        await harness.process()
        assert (await harness.states(message_id))["buerger@example.net"] is (
            RecipientState.QUARANTINED)
        await harness.store.requeue(message_id, recipients=["buerger@example.net"],
                                    states=[RecipientState.QUARANTINED], release=True,
                                    now=harness.clock.now())
        await harness.process()
        [record] = await harness.store.recipients(message_id)
        assert record.state is RecipientState.DELIVERED
        assert record.released
    assert len(harness.sink.to("buerger@example.net")) == 1


async def test_release_never_skips_protection(siegel_harness):
    # Customer-related and not fit for e-mail: release lifts the hold, protection still applies.
    config = {"settings": {"fit_for_email": {"phrases": ["Rechtsfolgenbelehrung"],
                                             "action": "hold"}}}
    raw = make_message(to="buerger@example.net", body="Rechtsfolgenbelehrung\n")
    async with siegel_harness(config=config) as harness:
        message_id = await harness.send(raw)
        await harness.process()
        await harness.store.requeue(message_id, recipients=None,
                                    states=[RecipientState.QUARANTINED], release=True,
                                    now=harness.clock.now())
        await harness.process()
        [record] = await harness.store.recipients(message_id)
        assert record.state is RecipientState.QUARANTINED
        assert any("no protection method" in r for r in record.reasons)
    assert harness.sink.to("buerger@example.net") == []


async def test_each_recipient_is_decided_on_its_own(siegel_harness):
    raw = make_message(to=["kollegin@behoerde.example", "buerger@example.net"])
    async with siegel_harness() as harness:
        message_id = await harness.send(raw)
        await harness.process()
        assert await harness.states(message_id) == {
            "kollegin@behoerde.example": RecipientState.DELIVERED,
            "buerger@example.net": RecipientState.QUARANTINED,
        }
    assert len(harness.sink.to("kollegin@behoerde.example")) == 1
    assert harness.sink.to("buerger@example.net") == []


async def test_held_message_released_by_its_plugin_is_delivered_protected(siegel_harness):
    import base64

    from siegel import Availability, Held, Outgoing, Protected, ProtectionMethod, Text, hookimpl

    registered: set[str] = set()

    class FirstContact:
        @hookimpl
        def siegel_register_protection_methods(self):
            async def can_serve(ctx):
                return Availability.yes(Text("ja", "yes"))

            async def protect(ctx):
                if str(ctx.recipient) not in registered:
                    return Held(reason=Text("Passwort fehlt", "no password yet"),
                                until=ctx.services.clock.now().replace(year=2030))
                return Protected(outgoing=[Outgoing(
                    channel="smtp", mail_from=str(ctx.message.envelope.mail_from),
                    recipients=[str(ctx.recipient)],
                    raw=b"Subject: x\r\n\r\n" + base64.b64encode(ctx.raw) + b"\r\n")],
                    reason=Text("verschlüsselt", "encrypted"))
            return [ProtectionMethod(name="first_contact", can_serve=can_serve, protect=protect)]

    config = {"tenants": {"test": {"protection": ["first_contact"]}}}
    async with siegel_harness(config=config, plugins=[("first", FirstContact())]) as harness:
        ids = [await harness.send(make_message(to="buerger@example.net", subject=f"Nr. {i}"))
               for i in range(2)]
        await harness.process()
        assert [(await harness.states(i))["buerger@example.net"] for i in ids] == [
            RecipientState.HELD, RecipientState.HELD]
        assert len(harness.notices("delayed")) == 2
        registered.add("buerger@example.net")
        from siegel import Address
        for message_id in ids:
            await harness.runtime.release(message_id, Address.parse("buerger@example.net"))
        await harness.process()
        assert [(await harness.states(i))["buerger@example.net"] for i in ids] == [
            RecipientState.DELIVERED, RecipientState.DELIVERED]
        assert len(harness.notices("protected")) == 2
        assert len(harness.notices("delayed")) == 2  # no second "delayed" notice
    assert len(harness.sink.to("buerger@example.net")) == 2


async def test_a_tenant_can_word_its_own_notices(siegel_harness, tmp_path):
    folder = tmp_path / "texts"
    (folder / "de").mkdir(parents=True)
    (folder / "de" / "quarantined.txt").write_text(
        "Nachricht gestoppt (Kreis)\nLiebe Kollegin, lieber Kollege: $recipient, $message_id\n$reasons\n",
        encoding="utf-8")
    config = {"settings": {"sender_notices": {"templates": "texts", "include_subject": False}}}
    async with siegel_harness(config=config) as harness:
        message_id = await harness.send(make_message(to="buerger@example.net",
                                                     subject="Herr Müller, Antrag"))
        await harness.process()
    [notice] = harness.notices("quarantined")
    assert notice["Subject"] == "Nachricht gestoppt (Kreis) / Message stopped"
    text = notice.get_content()
    assert f"Liebe Kollegin, lieber Kollege: buerger@example.net, {message_id}" in text
    assert "Your message was stopped" in text  # English falls back to the built-in text
    assert "Müller" not in text and "Müller" not in notice["Subject"]


async def test_one_deployment_serves_tenants_with_their_own_rules(siegel_harness):
    config = {"tenants": {
        "test": {"settings": {"recipient_scope": {"external": "protect"}}},
        "stadt": {"name": "Stadt", "domains": ["stadt.example"], "plugin_set": "baseline",
                  "settings": {"recipient_scope": {"external": "plain"}}},
    }}
    async with siegel_harness(config=config) as harness:
        strict = await harness.send(make_message(sender="a@behoerde.example",
                                                 to="buerger@example.net"))
        relaxed = await harness.send(make_message(sender="b@stadt.example",
                                                  to="buerger@example.net"))
        await harness.process()
        records = {r.message_id: r for mid in (strict, relaxed)
                   for r in await harness.store.recipients(mid)}
        assert records[strict].tenant == "test"
        assert records[strict].state is RecipientState.QUARANTINED
        assert records[relaxed].tenant == "stadt"
        assert records[relaxed].state is RecipientState.DELIVERED
    [notice] = harness.notices("quarantined")
    assert notice["To"] == "a@behoerde.example"
    assert "Testbehörde" in notice["From"]
