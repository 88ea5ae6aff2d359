"""Fail closed: a failure in any stage never lets a copy that needs protection out in plain text.

A plugin injects one fault per scenario into one stage. The message carries a marker; after all
processing (retries included) no mail at the real SMTP sink may contain the marker in the clear.
A control scenario with a working (toy) protection proves the marker check would catch a leak.
"""

from __future__ import annotations

import asyncio
import base64

import attrs
import pytest

from siegel import (
    Availability,
    Classifier,
    DeliveryChannel,
    DeliveryResult,
    Finding,
    Held,
    Level,
    Notifier,
    Outgoing,
    Protected,
    ProtectionMethod,
    RecipientState,
    Rewriter,
    Text,
    hookimpl,
)
from siegel.testing import make_message

MARKER = "VERTRAULICH-4711"
CITIZEN = "buerger@example.net"
SENDER = "sachbearbeitung@behoerde.example"


def toy_protect(raw: bytes) -> bytes:
    """Stands in for a real protection method: the content leaves encoded, not readable."""
    return (b"Subject: protected\r\nContent-Type: application/octet-stream\r\n\r\n"
            + base64.b64encode(raw[::-1]) + b"\r\n")


@attrs.define
class FaultPlugin:
    """A protection method, a delivery channel, a classifier, a rewriter and a notifier, each of
    which misbehaves when ``fault`` names it."""

    fault: str

    @hookimpl
    def siegel_register_classifiers(self):
        async def classify(ctx):
            if self.fault == "classifier-raises":
                raise RuntimeError("classifier bug")
            if self.fault == "classifier-hangs":
                await asyncio.sleep(30)
            if self.fault == "classifier-returns-garbage":
                return {"level": "plain"}
            if self.fault == "classifier-returns-a-level":
                return Level.QUARANTINE
            if self.fault == "classifier-returns-true":
                return True
            if self.fault == "classifier-returns-a-string":
                return "PROTECT"
            return Finding(level=Level.PLAIN, code="fault.none", reason=Text("ok", "ok"))
        return [Classifier(name="faulty_classifier", classify=classify)]

    @hookimpl
    def siegel_register_rewriters(self):
        def rewrite(raw, ctx):
            if self.fault == "rewriter-raises":
                raise ValueError("rewriter bug")
        return [Rewriter(name="faulty_rewriter", rewrite=rewrite)]

    @hookimpl
    def siegel_register_protection_methods(self):
        async def can_serve(ctx):
            if self.fault == "can-serve-raises":
                raise RuntimeError("directory down")
            if self.fault == "can-serve-garbage":
                return True
            return Availability.yes(Text("bereit", "ready"))

        async def protect(ctx):
            if self.fault == "protect-raises":
                raise RuntimeError("encryption bug")
            if self.fault == "protect-hangs":
                await asyncio.sleep(30)
            if self.fault == "protect-returns-original":
                return Protected(outgoing=[Outgoing(channel="smtp", mail_from=SENDER,
                                                    recipients=[CITIZEN], raw=ctx.message.raw)],
                                 reason=Text("", ""))
            if self.fault == "protect-returns-rewritten":
                return Protected(outgoing=[Outgoing(channel="smtp", mail_from=SENDER,
                                                    recipients=[CITIZEN], raw=ctx.raw)],
                                 reason=Text("", ""))
            if self.fault == "protect-returns-nothing":
                return Protected(outgoing=[], reason=Text("", ""))
            if self.fault == "protect-returns-garbage":
                return ctx.raw
            if self.fault == "protect-unknown-channel":
                return Protected(outgoing=[Outgoing(channel="nowhere", mail_from=SENDER,
                                                    recipients=[CITIZEN], raw=toy_protect(ctx.raw))],
                                 reason=Text("", ""))
            channel = "flaky" if self.fault.startswith("channel-") else "smtp"
            return Protected(outgoing=[Outgoing(channel=channel, mail_from=SENDER,
                                                recipients=[CITIZEN], raw=toy_protect(ctx.raw))],
                             reason=Text("geschützt", "protected"))
        return [ProtectionMethod(name="toy", can_serve=can_serve, protect=protect)]

    @hookimpl
    def siegel_register_delivery_channels(self):
        async def deliver(outgoing, tenant):
            if self.fault == "channel-raises":
                raise ConnectionError("postbox down")
            if self.fault == "channel-hangs":
                await asyncio.sleep(30)
            return DeliveryResult.permanent_failure("550 no such postbox")
        return [DeliveryChannel(name="flaky", deliver=deliver)]

    @hookimpl
    def siegel_register_notifiers(self):
        async def notify(notice, tenant):
            if self.fault == "notifier-raises":
                raise RuntimeError("notifier bug")
            return []
        return [Notifier(name="faulty_notifier", notify=notify)]


CONFIG = {
    "tenants": {"test": {"protection": ["toy"]}},
    "delivery": {"classify_timeout_seconds": 0.2, "protect_timeout_seconds": 0.2,
                 "deliver_timeout_seconds": 0.2, "give_up_after_hours": 1,
                 "first_retry_seconds": 600, "max_retry_seconds": 600},
}

FAULTS = {
    # fault: the state the citizen's copy must end in
    "classifier-raises": RecipientState.QUARANTINED,
    "classifier-hangs": RecipientState.QUARANTINED,
    "classifier-returns-garbage": RecipientState.QUARANTINED,
    "classifier-returns-a-level": RecipientState.QUARANTINED,
    "classifier-returns-true": RecipientState.QUARANTINED,
    "classifier-returns-a-string": RecipientState.QUARANTINED,
    "rewriter-raises": RecipientState.QUARANTINED,
    "can-serve-raises": RecipientState.QUARANTINED,
    "can-serve-garbage": RecipientState.QUARANTINED,
    "protect-raises": RecipientState.QUARANTINED,
    "protect-hangs": RecipientState.QUARANTINED,
    "protect-returns-original": RecipientState.QUARANTINED,
    "protect-returns-rewritten": RecipientState.QUARANTINED,
    "protect-returns-nothing": RecipientState.QUARANTINED,
    "protect-returns-garbage": RecipientState.QUARANTINED,
    "protect-unknown-channel": RecipientState.QUARANTINED,
    "channel-raises": RecipientState.FAILED,
    "channel-hangs": RecipientState.FAILED,
    "notifier-raises": RecipientState.DELIVERED,
}


def leaked(harness) -> list[bytes]:
    return [m.raw for m in harness.sink.messages if MARKER.encode() in m.raw]


async def run(siegel_harness, fault: str, *, relay_down: bool = False):
    raw = make_message(to=CITIZEN, subject="[secure] Ihr Antrag",
                       body=f"Kundendaten {MARKER}\n", headers={"X-Siegel-Encrypt": "yes"})
    async with siegel_harness(config=CONFIG, plugins=[("fault", FaultPlugin(fault))]) as harness:
        if relay_down:
            harness.sink.data_reply = "451 4.3.0 try later"
        message_id = await harness.send(raw, mail_from=SENDER, rcpt_to=[CITIZEN])
        await harness.process()
        # Retries: walk the clock past every back-off until the copy gives up.
        for _ in range(20):
            harness.clock.advance(minutes=11)
            await harness.process()
        harness.sink.data_reply = None
        await harness.process()
        return harness, (await harness.states(message_id))[CITIZEN]


async def test_control_a_working_protection_delivers_without_the_marker(siegel_harness):
    harness, state = await run(siegel_harness, "none")
    assert state is RecipientState.DELIVERED
    [delivered] = harness.sink.to(CITIZEN)
    assert MARKER.encode() not in delivered.raw
    assert MARKER.encode() in base64.b64decode(delivered.raw.split(b"\r\n\r\n", 1)[1])[::-1]
    assert leaked(harness) == []
    [notice] = harness.notices("protected")
    assert "Verschlüsselung erfolgreich" in notice["Subject"]


@pytest.mark.parametrize("fault", sorted(FAULTS))
async def test_a_fault_in_any_stage_never_leaks(siegel_harness, fault):
    harness, state = await run(siegel_harness, fault)
    assert leaked(harness) == [], f"{fault}: plain text reached the sink"
    assert state is FAULTS[fault], fault
    if state is RecipientState.QUARANTINED:
        [notice] = harness.notices("quarantined")
        assert notice["To"] == SENDER
    if state is RecipientState.FAILED:
        [notice] = harness.notices("undeliverable")
        assert notice["To"] == SENDER


async def test_relay_down_defers_then_fails_without_leaking(siegel_harness):
    harness, state = await run(siegel_harness, "none", relay_down=True)
    assert state is RecipientState.FAILED
    assert leaked(harness) == []


class Crashing:
    """A classifier that crashes, for the release test."""

    @hookimpl
    def siegel_register_classifiers(self):
        async def classify(ctx):
            raise RuntimeError("crash")
        return [Classifier(name="crashing", classify=classify)]


async def test_release_cannot_override_a_crashed_classifier(siegel_harness):
    raw = make_message(to=CITIZEN, body=f"{MARKER}\n")
    config = {"settings": {"recipient_scope": {"external": "plain"}}}
    async with siegel_harness(config=config, plugins=[("crashing", Crashing())]) as harness:
        message_id = await harness.send(raw)
        await harness.process()
        assert (await harness.states(message_id))[CITIZEN] is RecipientState.QUARANTINED
        count = await harness.store.requeue(message_id, recipients=None,
                                            states=[RecipientState.QUARANTINED], release=True,
                                            now=harness.clock.now())
        assert count == 1
        await harness.process()
        assert (await harness.states(message_id))[CITIZEN] is RecipientState.QUARANTINED
    assert leaked(harness) == []


@pytest.mark.parametrize("raw", [
    b"garbage without any header line " + MARKER.encode() + b"\r\n",
    b"From: sachbearbeitung@behoerde.example\r\nTo: buerger@example.net\r\n"
    b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n" + MARKER.encode() + b"\r\n",
    b"From: sachbearbeitung@behoerde.example\r\nContent-Type: multipart/mixed\r\n\r\n--x\r\n"
    + MARKER.encode() + b"\r\n--x--\r\n",
], ids=["no-headers", "boundary-never-starts", "no-boundary-parameter"])
async def test_broken_mime_to_external_recipient_is_quarantined_with_the_part(siegel_harness, raw):
    config = {"settings": {"recipient_scope": {"external": "plain"}}}
    async with siegel_harness(config=config) as harness:
        message_id = await harness.send(raw, mail_from=SENDER, rcpt_to=[CITIZEN])
        await harness.process()
        [record] = await harness.store.recipients(message_id)
        assert record.state is RecipientState.QUARANTINED
        assert any("broken MIME structure (message: " in reason for reason in record.reasons)
    assert leaked(harness) == []


async def test_held_copy_stays_encrypted_and_expires(siegel_harness):
    class Holding:
        @hookimpl
        def siegel_register_protection_methods(self):
            async def can_serve(ctx):
                return Availability.yes(Text("Erstkontakt", "first contact"))

            async def protect(ctx):
                return Held(reason=Text("Warten auf Passwort", "waiting for password"),
                            until=ctx.services.clock.now() + __import__("datetime").timedelta(days=5))
            return [ProtectionMethod(name="hold", can_serve=can_serve, protect=protect)]

    raw = make_message(to=CITIZEN, body=f"{MARKER}\n")
    config = {"tenants": {"test": {"protection": ["hold"]}}}
    async with siegel_harness(config=config, plugins=[("holding", Holding())]) as harness:
        message_id = await harness.send(raw)
        await harness.process()
        assert (await harness.states(message_id))[CITIZEN] is RecipientState.HELD
        [delayed] = harness.notices("delayed")
        assert "Zustellung verzögert" in delayed["Subject"]
        harness.clock.advance(days=4, hours=23)
        await harness.process()
        assert (await harness.states(message_id))[CITIZEN] is RecipientState.HELD
        harness.clock.advance(hours=2)
        await harness.process()
        [record] = await harness.store.recipients(message_id)
        assert record.state is RecipientState.EXPIRED
        assert record.content_destroyed
        [expired] = harness.notices("expired")
        assert expired["To"] == SENDER
    assert leaked(harness) == []


class Unwrapping:
    """Inbound 'decryption' for the test: a base64 wrapper around the real message."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail

    @hookimpl
    def siegel_register_transformers(self):
        async def unwrap(ctx):
            if self.fail:
                raise RuntimeError("cannot decrypt")
            if ctx.email.get_content_type() != "application/x-wrapped":
                return None
            return base64.b64decode(ctx.email.get_payload())
        from siegel import Transformer
        return [Transformer(name="unwrap", transform=unwrap)]


WRAPPED = (b"From: sachbearbeitung@behoerde.example\r\nTo: buerger@example.net\r\n"
           b"Content-Type: application/x-wrapped\r\n\r\n"
           + base64.b64encode(b"Subject: inner\r\n\r\nKundennummer " + MARKER.encode() + b"\r\n")
           + b"\r\n")


async def test_classifiers_judge_the_transformed_copy(siegel_harness):
    config = {"settings": {"recipient_scope": {"external": "plain"}, "content_rules": {"rules": [
        {"name": "marker", "pattern": MARKER}]}}}
    async with siegel_harness(config=config, plugins=[("unwrap", Unwrapping())]) as harness:
        message_id = await harness.send(WRAPPED, mail_from=SENDER, rcpt_to=[CITIZEN])
        await harness.process()
        [record] = await harness.store.recipients(message_id)
        assert record.state is RecipientState.QUARANTINED  # protect, and no method configured
        assert any("content rule 'marker'" in r for r in record.reasons)
    assert leaked(harness) == []


async def test_a_failing_transformer_quarantines(siegel_harness):
    config = {"settings": {"recipient_scope": {"external": "plain"}}}
    async with siegel_harness(config=config,
                              plugins=[("unwrap", Unwrapping(fail=True))]) as harness:
        message_id = await harness.send(WRAPPED, mail_from=SENDER, rcpt_to=[CITIZEN])
        await harness.process()
        [record] = await harness.store.recipients(message_id)
        assert record.state is RecipientState.QUARANTINED
        assert "transformer 'unwrap' (plugin 'unwrap'): raised RuntimeError" in record.detail
    assert harness.sink.to(CITIZEN) == []
