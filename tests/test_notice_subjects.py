"""Notices repeat the subject as the copy left: without the sender's trigger tag, for every kind."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from siegel import (
    Availability,
    Held,
    NoticeKind,
    Outgoing,
    Protected,
    ProtectionMethod,
    RecipientState,
    Text,
    hookimpl,
)
from siegel.testing import make_message

SENDER = "sachbearbeitung@behoerde.example"
TAGGED = "[verschlüsseln] Antrag Müller  [SECURE]"
CLEAN = "Antrag Müller"


class HoldThenProtect:
    """Holds every copy until released (``ready``), then "protects" it (base64, for the test)."""

    def __init__(self) -> None:
        self.ready = False

    @hookimpl
    def siegel_register_protection_methods(self) -> list[ProtectionMethod]:
        async def can_serve(ctx):
            return Availability.yes(Text("ja", "yes"))

        async def protect(ctx):
            if not self.ready:
                return Held(reason=Text("wartet", "waits"),
                            until=ctx.services.clock.now().replace(day=10))
            return Protected(outgoing=[Outgoing(
                channel="smtp", mail_from=SENDER, recipients=[str(ctx.recipient)],
                raw=b"Subject: x\r\n\r\n" + base64.b64encode(ctx.raw) + b"\r\n")],
                reason=Text("verschlüsselt", "encrypted"))
        return [ProtectionMethod(name="hold_then_protect", can_serve=can_serve, protect=protect)]


def _subjects(notice) -> Iterator[str]:
    yield str(notice["Subject"])
    yield notice.get_content()


def _assert_clean(notices) -> None:
    assert notices
    for notice in notices:
        for text in _subjects(notice):
            assert CLEAN in text
            assert "[verschlüsseln]" not in text.lower() and "[secure]" not in text.lower()


async def test_quarantined_notice_repeats_the_subject_without_the_tag(siegel_harness):
    async with siegel_harness() as harness:
        await harness.send(make_message(to="buerger@example.net", subject=TAGGED))
        await harness.process()
    _assert_clean(harness.notices(NoticeKind.QUARANTINED))


async def test_undeliverable_notice_repeats_the_subject_without_the_tag(siegel_harness):
    async with siegel_harness() as harness:
        harness.sink.rcpt_reply = lambda rcpt: (
            "550 5.1.1 no such user" if "unbekannt" in rcpt else None)
        await harness.send(make_message(to="unbekannt@behoerde.example", subject=TAGGED))
        await harness.process()
    _assert_clean(harness.notices(NoticeKind.UNDELIVERABLE))


async def test_warning_notice_repeats_the_subject_without_the_tag(siegel_harness):
    method = HoldThenProtect()
    method.ready = True
    config = {"settings": {"fit_for_email": {"phrases": ["Rechtsfolgenbelehrung"]}},
              "tenants": {"test": {"protection": ["hold_then_protect"]}}}
    async with siegel_harness(config=config, plugins=[("hold", method)]) as harness:
        await harness.send(make_message(to="buerger@example.net", subject=TAGGED,
                                        body="Anbei die Rechtsfolgenbelehrung.\n"))
        await harness.process()
    _assert_clean(harness.notices(NoticeKind.WARNING))


@pytest.mark.parametrize("kind", [NoticeKind.DELAYED, NoticeKind.PROTECTED, NoticeKind.EXPIRED])
async def test_held_protected_and_expired_notices_repeat_the_subject_without_the_tag(
        siegel_harness, kind):
    method = HoldThenProtect()
    config = {"tenants": {"test": {"protection": ["hold_then_protect"]}}}
    async with siegel_harness(config=config, plugins=[("hold", method)]) as harness:
        message_id = await harness.send(make_message(to="buerger@example.net", subject=TAGGED))
        await harness.process()
        assert (await harness.states(message_id))["buerger@example.net"] is RecipientState.HELD
        if kind is NoticeKind.PROTECTED:
            method.ready = True
            from siegel import Address
            await harness.runtime.release(message_id, Address.parse("buerger@example.net"))
        elif kind is NoticeKind.EXPIRED:
            harness.clock.advance(days=6)
        await harness.process()
    _assert_clean(harness.notices(kind))


async def test_a_subject_that_is_only_the_tag_leaves_no_tag_in_the_notice(siegel_harness):
    async with siegel_harness() as harness:
        await harness.send(make_message(to="buerger@example.net", subject="[secure]"))
        await harness.process()
    [notice] = harness.notices(NoticeKind.QUARANTINED)
    assert "secure" not in str(notice["Subject"]).lower()
    assert "[secure]" not in notice.get_content().lower()


async def test_without_the_trigger_plugin_the_subject_is_repeated_as_written(siegel_harness):
    # The tag means nothing to a tenant that does not enable the trigger: it is the subject.
    config = {"tenants": {"test": {"disabled_plugins": ["sender_trigger"]}}}
    async with siegel_harness(config=config) as harness:
        await harness.send(make_message(to="buerger@example.net", subject="[secure] Antrag"))
        await harness.process()
    [notice] = harness.notices(NoticeKind.QUARANTINED)
    assert "[secure] Antrag" in str(notice["Subject"])
