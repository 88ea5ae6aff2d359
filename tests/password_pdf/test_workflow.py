"""The district's workflow end to end over a real SMTP sink: hold, invite, register, deliver the
PDF, open it with qpdf and poppler, reset, reply, expire."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest
from password_pdf_helpers import sha256

from siegel import Address, RecipientState
from siegel.plugins.password_pdf import render_pool
from siegel.plugins.password_pdf.workflow import TokenInvalid, Workflow
from siegel.testing import make_message

CITIZEN = "buerger@example.net"
CLERK = "sachbearbeitung@behoerde.example"
PASSWORD = "Grüße-€-Paßwort 7"
BODY = "Sehr geehrte Frau Müller,\nIhre Kundennummer 123A456789: anbei der Bescheid über 12,50 €.\n"
ATTACHMENT = ("Bescheid_Müller.pdf", "application/pdf", b"%PDF-1.7\n" + bytes(range(256)) * 20)
CONFIG = {"tenants": {"test": {"plugin_set": "district", "domains": ["behoerde.example"]}},
          "portal": {"public_base_url": "https://post.behoerde.example"}}


def link_from(mail, kind: str) -> str:
    text = mail.parsed.get_body(("plain",)).get_content()
    match = re.search(rf"https://post\.behoerde\.example/t/test/{kind}/(\S+)", text)
    assert match, text
    return match.group(1)


def pdf_of(mail, tmp_path):
    [part] = [p for p in mail.parsed.iter_attachments() if p.get_filename() == "nachricht.pdf"]
    path = tmp_path / f"{sha256(mail.raw)[:8]}.pdf"
    path.write_bytes(part.get_content())
    return path


def run(*args, check=True):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, check=check)


async def send_customer_mail(harness, subject="Ihr Bescheid", body=BODY):
    return await harness.send(make_message(to=CITIZEN, subject=subject, body=body,
                                           attachments=[ATTACHMENT]))


async def test_first_contact_register_and_deliver(siegel_harness, tmp_path):
    async with siegel_harness(config=CONFIG) as harness:
        first = await send_customer_mail(harness)
        second = await send_customer_mail(harness, subject="Zweite Nachricht")
        await harness.process()
        assert (await harness.states(first))[CITIZEN] is RecipientState.HELD
        assert (await harness.states(second))[CITIZEN] is RecipientState.HELD
        [invitation] = harness.sink.to(CITIZEN)  # one invitation for both messages
        assert "verschlüsselte Nachricht" in invitation.parsed["Subject"]
        assert b"123A456789" not in invitation.raw and b"Bescheid" not in invitation.raw
        assert len(harness.notices("delayed")) == 2
        assert "Zustellung verz" in harness.notices("delayed")[0]["Subject"]

        token = link_from(invitation, "register")
        workflow = Workflow(harness.runtime, harness.config.tenants["test"])
        recipient, problems = await workflow.register(token, "passwort123")
        assert recipient == Address.parse(CITIZEN) and problems  # too common, too short
        _, problems = await workflow.register(token, PASSWORD)
        assert problems == []
        with pytest.raises(TokenInvalid):
            await workflow.register(token, PASSWORD)  # single use
        await harness.process()
        assert (await harness.states(first))[CITIZEN] is RecipientState.DELIVERED
        assert (await harness.states(second))[CITIZEN] is RecipientState.DELIVERED
        assert len(harness.notices("protected")) == 2

        # A known recipient gets new mail at once.
        third = await send_customer_mail(harness, subject="Dritte")
        await harness.process()
        assert (await harness.states(third))[CITIZEN] is RecipientState.DELIVERED

    carriers = [m for m in harness.sink.to(CITIZEN) if m.parsed.get("X-Siegel-Protection")]
    assert len(carriers) == 3
    carrier = carriers[0]
    assert b"123A456789" not in carrier.raw and "Müller" not in carrier.raw.decode("latin-1")
    assert carrier.parsed["Subject"] == "Verschlüsselte Nachricht von Testbehörde"
    assert "/t/test/reply/" in carrier.parsed.get_body(("plain",)).get_content()
    pdf = pdf_of(carrier, tmp_path)
    shown = run("qpdf", f"--password={PASSWORD}", "--show-encryption", pdf).stdout
    assert "R = 6" in shown and "AESv3" in shown
    wrong = run("qpdf", "--password=falsch", "--decrypt", pdf, tmp_path / "x.pdf", check=False)
    assert wrong.returncode != 0 and "invalid password" in wrong.stderr
    text = run("pdftotext", "-upw", PASSWORD, pdf, "-").stdout
    assert "Kundennummer 123A456789" in text and "12,50 €" in text and "Müller" in text
    out = tmp_path / "detached"
    out.mkdir()
    run("pdfdetach", "-upw", PASSWORD, "-saveall", "-o", out, pdf)
    assert (out / "Bescheid_Müller.pdf").read_bytes() == ATTACHMENT[2]


async def test_unregistered_recipient_expires_after_five_days(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        message_id = await send_customer_mail(harness)
        await harness.process()
        token = link_from(harness.sink.to(CITIZEN)[0], "register")
        harness.clock.advance(days=4, hours=23)
        await harness.process()
        assert (await harness.states(message_id))[CITIZEN] is RecipientState.HELD
        harness.clock.advance(hours=2)
        await harness.process()
        [record] = await harness.store.recipients(message_id)
        assert record.state is RecipientState.EXPIRED and record.content_destroyed
        assert len(harness.notices("expired")) == 1
        workflow = Workflow(harness.runtime, harness.config.tenants["test"])
        with pytest.raises(TokenInvalid):
            await workflow.register(token, PASSWORD)  # the link stopped working


async def test_reset_needs_the_mailbox_and_tells_the_recipient(siegel_harness, tmp_path):
    async with siegel_harness(config=CONFIG) as harness:
        workflow = Workflow(harness.runtime, harness.config.tenants["test"])
        await send_customer_mail(harness)
        await harness.process()
        await workflow.register(link_from(harness.sink.to(CITIZEN)[0], "register"), PASSWORD)
        await harness.process()
        before = len(harness.sink.messages)
        await workflow.request_reset(Address.parse("unbekannt@example.net"))
        await harness.process()
        assert len(harness.sink.messages) == before  # unknown: nothing sent, same answer
        await workflow.request_reset(Address.parse(CITIZEN))
        await harness.process()
        [reset_mail] = [m for m in harness.sink.to(CITIZEN)
                        if m.parsed.get("X-Siegel-Mail") == "password_pdf.reset"]
        token = link_from(reset_mail, "reset")
        reset_text = reset_mail.parsed.get_content()
        # Requested at the harness clock's 09:00 UTC; valid 60 minutes, until 11:00 MEZ.
        assert "60 Minuten gültig (bis 5. Januar 2026, 11:00 Uhr (MEZ))" in reset_text
        assert "60 minutes (until 5 January 2026, 11:00 CET)" in reset_text
        harness.clock.advance(minutes=30)
        _, problems = await workflow.reset(token, "Neues-Passwort-2026!")
        assert problems == []
        await harness.process()
        [changed] = [m for m in harness.sink.to(CITIZEN)
                     if m.parsed.get("X-Siegel-Mail") == "password_pdf.password_changed"]
        assert "am 5. Januar 2026, 10:30 Uhr (MEZ) geändert" in changed.parsed.get_content()
        await send_customer_mail(harness, subject="Nach dem Wechsel")
        await harness.process()
    carrier = [m for m in harness.sink.to(CITIZEN) if m.parsed.get("X-Siegel-Protection")][-1]
    pdf = pdf_of(carrier, tmp_path)
    assert run("qpdf", "--password=Neues-Passwort-2026!", "--check", pdf).returncode == 0
    old = run("qpdf", f"--password={PASSWORD}", "--decrypt", pdf, tmp_path / "x.pdf", check=False)
    assert old.returncode != 0 and "invalid password" in old.stderr


async def test_reset_link_expires(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        workflow = Workflow(harness.runtime, harness.config.tenants["test"])
        await send_customer_mail(harness)
        await harness.process()
        await workflow.register(link_from(harness.sink.to(CITIZEN)[0], "register"), PASSWORD)
        await workflow.request_reset(Address.parse(CITIZEN))
        await harness.process()
        [reset_mail] = [m for m in harness.sink.to(CITIZEN)
                        if m.parsed.get("X-Siegel-Mail") == "password_pdf.reset"]
        harness.clock.advance(minutes=61)
        with pytest.raises(TokenInvalid):
            await workflow.reset(link_from(reset_mail, "reset"), "Neues-Passwort-2026!")


async def test_reply_reaches_the_sender_and_cannot_read_anything(siegel_harness):
    async with siegel_harness(config=CONFIG) as harness:
        workflow = Workflow(harness.runtime, harness.config.tenants["test"])
        message_id = await send_customer_mail(harness)
        await harness.process()
        await workflow.register(link_from(harness.sink.to(CITIZEN)[0], "register"), PASSWORD)
        await harness.process()
        carrier = next(m for m in harness.sink.to(CITIZEN) if m.parsed.get("X-Siegel-Protection"))
        token = link_from(carrier, "reply")
        with pytest.raises(TokenInvalid):
            await workflow.reset(token, PASSWORD)  # single purpose
        with pytest.raises(TokenInvalid):
            await workflow.register(token, PASSWORD)
        await workflow.reply(token, "Vielen Dank, ich reiche die Unterlagen nach.",
                             [("Nachweis.pdf", "application/pdf", b"%PDF-1.4 nachweis")])
        await harness.process()
    [reply] = [m for m in harness.sink.to(CLERK) if m.parsed.get("X-Siegel-Reply-To-Message")]
    parsed = reply.parsed
    assert parsed["X-Siegel-Reply-To-Message"] == message_id
    assert parsed["Reply-To"] == CITIZEN
    text = parsed.get_body(("plain",)).get_content()
    assert "Vielen Dank, ich reiche die Unterlagen nach." in text
    # The harness clock's 5 January 2026, 09:00 UTC, as the clerk reads it.
    assert "eingegangen 5. Januar 2026, 10:00 Uhr (MEZ)" in text
    assert "received 5 January 2026, 10:00 CET" in text
    [attachment] = list(parsed.iter_attachments())
    assert attachment.get_filename() == "Nachweis.pdf"
    assert attachment.get_content() == b"%PDF-1.4 nachweis"


def test_password_rules():
    from siegel.plugins.password_pdf.workflow import password_problems

    citizen = Address.parse("joerg.mueller@example.net")
    assert password_problems("Pferd Batterie Heftklammer", citizen, 12) == []
    assert password_problems("kurz", citizen, 12)
    assert password_problems("password1234", citizen, 12)  # common
    assert password_problems("joerg.mueller-2026", citizen, 12)  # contains the address
    assert password_problems("aaaaaaaaaaaaaaaa", citizen, 12)
    assert password_problems("x" * 20 + "ÄÖÜäöüß€€", citizen, 12)  # over 32 bytes: viewers fail


async def test_a_render_worker_that_dies_is_replaced_and_the_copy_retried(siegel_harness,
                                                                         monkeypatch):
    """A render worker killed while it renders (out of memory, say): nothing reaches the
    recipient, the copy waits for a retry with a new worker and is then delivered; a copy that
    kills its worker every time is quarantined after max_protect_retries, the sender told."""
    config = {**CONFIG, "delivery": {"max_protect_retries": 2}}
    async with siegel_harness(config=config) as harness:
        await send_customer_mail(harness)
        await harness.process()
        [invitation] = harness.sink.to(CITIZEN)
        workflow = Workflow(harness.runtime, harness.config.tenants["test"])
        await workflow.register(link_from(invitation, "register"), PASSWORD)
        await harness.process()
        delivered = len(harness.sink.to(CITIZEN))
        original = render_pool._Worker.render
        kills = {"left": 1}

        def killed_while_rendering(self, *args):
            if kills["left"]:
                kills["left"] -= 1
                os.kill(self.process.pid, signal.SIGKILL)
            return original(self, *args)

        monkeypatch.setattr(render_pool._Worker, "render", killed_while_rendering)
        [worker] = render_pool.RENDER_POOL.worker_pids()
        once = await send_customer_mail(harness, subject="Einmal beendet")
        await harness.process()
        [record] = await harness.store.recipients(once)
        assert record.state is RecipientState.ACCEPTED, record
        assert record.detail == "the PDF render worker died while rendering"
        assert len(harness.sink.to(CITIZEN)) == delivered
        # The dead one is gone; a new one comes when needed.
        assert render_pool.RENDER_POOL.worker_pids() == []
        harness.clock.advance(seconds=600)
        await harness.process()
        assert (await harness.states(once))[CITIZEN] is RecipientState.DELIVERED
        assert render_pool.RENDER_POOL.worker_pids() not in ([], [worker])
        delivered += 1

        kills["left"] = 100
        doomed = await send_customer_mail(harness, subject="Jedes Mal beendet")
        for _ in range(3):
            await harness.process()
            harness.clock.advance(seconds=600)
        [record] = await harness.store.recipients(doomed)
        assert record.state is RecipientState.QUARANTINED, record
        assert "gave up after 3 tries: the PDF render worker died" in record.detail
        assert len(harness.sink.to(CITIZEN)) == delivered
        assert harness.notices("quarantined")
