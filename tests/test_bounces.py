"""Bounces of invitations come back to siegel (VERP) and end the held copy within minutes.

The end-to-end tests run a real relay (aiosmtpd) that stores and forwards as Postfix does: the
citizen's mail server (an aiosmtpd sink) answers 550 5.1.1, and the relay writes the bounce in
Postfix's format (multipart/report with message/delivery-status, RFC 3464) to the envelope sender,
which Postfix's transport table (docs/postfix.rst) routes to siegel's listener.
"""

from __future__ import annotations

import asyncio
import email.utils
import smtplib
import threading
from collections.abc import Iterator

import pytest
from aiosmtpd.controller import Controller

from siegel import Address, RecipientState
from siegel.bounces import (
    BounceKind,
    read_bounce,
    token_in,
    verp_address,
)
from siegel.gateway import SmtpGateway
from siegel.sink import SmtpSink, free_port
from siegel.testing import make_message

CITIZEN = "buerger@example.net"
CLERK = "sachbearbeitung@behoerde.example"
BOUNCE_BASE = Address.parse("siegel-bounce@behoerde.example")


# -- a relay that bounces, as Postfix does -------------------------------------------------------

POSTFIX_TEXT = """\
This is the mail system at host relay.behoerde.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system

<{recipient}>: host mx.example.net[127.0.0.1] said: {reply} (in reply to RCPT TO
    command)
"""


def postfix_bounce(*, sender: str, recipient: str, code: int, reply: str, original: bytes,
                   action: str = "failed") -> bytes:
    """A bounce byte for byte as Postfix's bounce(8) writes it: multipart/report with the
    human-readable text, the RFC 3464 delivery status and the returned message's headers."""
    status = next((word for word in reply.split() if word[:1] in "245" and word.count(".") == 2),
                  f"{str(code)[0]}.0.0")
    boundary = "4ZxR2k1QzBz9sWQ.1767603601/relay.behoerde.example"
    subject = ("Undelivered Mail Returned to Sender" if action == "failed"
               else "Delayed Mail (still being retried)")
    text = POSTFIX_TEXT.format(recipient=recipient, reply=reply)
    returned = original.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    return (
        f"Date: {email.utils.formatdate(localtime=True)}\r\n"
        "From: MAILER-DAEMON@relay.behoerde.example (Mail Delivery System)\r\n"
        f"Subject: {subject}\r\n"
        f"To: {sender}\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status;\r\n"
        f'\tboundary="{boundary}"\r\n'
        "Content-Transfer-Encoding: 8bit\r\n"
        "Message-Id: <20260105090001.4ZxR2k1QzBz9sWQ@relay.behoerde.example>\r\n"
        "\r\n"
        "This is a MIME-encapsulated message.\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Notification\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
        + text.replace("\n", "\r\n") +
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Delivery report\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; relay.behoerde.example\r\n"
        "X-Postfix-Queue-ID: 4ZxR2k1QzBz9sWQ\r\n"
        f"X-Postfix-Sender: rfc822; {sender}\r\n"
        "Arrival-Date: Mon,  5 Jan 2026 10:00:01 +0100 (CET)\r\n"
        "\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        f"Original-Recipient: rfc822;{recipient}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        "Remote-MTA: dns; mx.example.net\r\n"
        f"Diagnostic-Code: smtp; {reply}\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Description: Undelivered Message Headers\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
        + returned + "\r\n"
        "\r\n"
        f"--{boundary}--\r\n"
    ).encode("utf-8")


class _RelayHandler:
    def __init__(self, relay: BouncingRelay) -> None:
        self.relay = relay

    async def handle_DATA(self, server, session, envelope) -> str:
        mail = (envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content
                or envelope.content)
        self.relay.accepted.append(mail[:2])
        # Store and forward: accept now, deliver later (as an MTA's queue does).
        thread = threading.Thread(target=self.relay.forward, args=mail, daemon=True)
        self.relay.threads.append(thread)
        thread.start()
        return "250 2.0.0 Ok: queued as 4ZxR2k1QzBz9sWQ"


class BouncingRelay:
    """The tenant's relay: internal mail to the mailbox server, bounce addresses to siegel (the
    transport table of docs/postfix.rst), everything else to the citizen's MX; a 5xx from there
    becomes a bounce to the envelope sender, a 4xx a delay report."""

    def __init__(self, *, mx: SmtpSink, mailboxes: SmtpSink) -> None:
        self.mx = mx
        self.mailboxes = mailboxes
        self.siegel: tuple[str, int] | None = None
        self.bounces: list[bytes] = []
        #: Envelope sender and recipients of every mail the relay accepted.
        self.accepted: list[tuple[str, list[str]]] = []
        self.threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []
        self.port = free_port()
        self.controller = Controller(_RelayHandler(self), hostname="127.0.0.1", port=self.port,
                                     decode_data=False)

    def start(self) -> BouncingRelay:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()

    def _next_hop(self, recipient: str) -> tuple[str, int]:
        address = Address.parse(recipient)
        if token_in(address, BOUNCE_BASE) is not None:
            assert self.siegel is not None
            return self.siegel
        if address.domain == "behoerde.example":
            return self.mailboxes.host, self.mailboxes.port
        return self.mx.host, self.mx.port

    def send(self, hop: tuple[str, int], mail_from: str, rcpt: str, data: bytes) -> None:
        with smtplib.SMTP(*hop, timeout=30) as client:
            client.sendmail(mail_from, [rcpt], data)

    def forward(self, mail_from: str, rcpt_tos: list[str], data: bytes) -> None:
        try:
            for rcpt in rcpt_tos:
                try:
                    self.send(self._next_hop(rcpt), mail_from, rcpt, data)
                except smtplib.SMTPRecipientsRefused as refused:
                    code, reply = refused.recipients[rcpt]
                    if mail_from in ("", "<>"):
                        continue  # never bounce a bounce
                    action = "failed" if code >= 500 else "delayed"
                    bounce = postfix_bounce(sender=mail_from, recipient=rcpt, code=code,
                                            reply=f"{code} {reply.decode()}", original=data,
                                            action=action)
                    self.bounces.append(bounce)
                    self.send(self._next_hop(mail_from), "", mail_from, bounce)
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)


@pytest.fixture
def mx() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    try:
        yield sink
    finally:
        sink.stop()


@pytest.fixture
def relay(mx, smtp_sink) -> Iterator[BouncingRelay]:
    relay = BouncingRelay(mx=mx, mailboxes=smtp_sink).start()
    try:
        yield relay
    finally:
        relay.stop()


def config_for(relay: BouncingRelay) -> dict:
    return {"tenants": {"test": {"plugin_set": "district", "domains": ["behoerde.example"]}},
            "portal": {"public_base_url": "https://post.behoerde.example"},
            "listeners": [{"port": 0}],
            "settings": {"relay": {"host": "127.0.0.1", "port": relay.port, "tls": "none"}}}


async def eventually(condition, what: str, seconds: float = 30.0) -> None:
    """Wait (generously) for something that other threads do."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def bounce_events(harness, message_id: str) -> list:
    return [e for e in await harness.store.events(message_id) if e.kind == "bounce"]


async def send_to_citizen(harness, **headers: str) -> str:
    return await harness.send(make_message(
        to=CITIZEN, subject="[verschlüsseln] Ihr Bescheid",
        body="Ihre Kundennummer 123A456789\n", headers={"X-Siegel-Encrypt": "yes", **headers}))


# -- end to end ----------------------------------------------------------------------------------


async def test_a_bounced_invitation_ends_the_held_copy_and_tells_the_clerk(
        siegel_harness, relay, mx, smtp_sink):
    mx.rcpt_reply = lambda rcpt: "550 5.1.1 <buerger@example.net>: Recipient address rejected: " \
        "User unknown in virtual mailbox table" if rcpt == CITIZEN else None
    async with siegel_harness(config=config_for(relay)) as harness:
        gateway = SmtpGateway(harness.runtime)
        [(host, port)] = await gateway.start()
        relay.siegel = (host, port)
        try:
            message_id = await send_to_citizen(harness)
            await harness.process()  # held; the invitation goes to the relay
            # The relay bounces on its own thread: the bounce may already have ended the hold
            # while process() still ran. Either way the copy was held first.
            assert (await harness.states(message_id))[CITIZEN] in (RecipientState.HELD,
                                                                   RecipientState.FAILED)
            assert any(e.kind == "held" for e in await harness.store.events(message_id))

            async def bounced() -> bool:
                return bool(await bounce_events(harness, message_id))
            await eventually(bounced, "the bounce to reach siegel")
            await harness.process()  # the worker ends the copy and writes the notice
            [record] = await harness.store.recipients(message_id)
            assert record.state is RecipientState.FAILED
            assert record.detail == "address does not exist"

            async def told() -> bool:
                return bool(harness.notices("bounced"))
            await eventually(told, "the clerk's notice")
            # A second copy of the same bounce (the token is used up) is refused at RCPT.
            [verp] = [sender for sender, rcpts in relay.accepted if rcpts == [CITIZEN]]
            with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
                await asyncio.to_thread(relay.send, (host, port), "", verp, relay.bounces[0])
            [(code, answer)] = refused.value.recipients.values()
            assert (code, answer) == (550, b"5.1.1 Unknown or expired bounce address")
            [event] = await bounce_events(harness, message_id)
        finally:
            await gateway.stop()
    assert relay.errors == []
    # The invitation went out with a VERP sender in the tenant's domain.
    token = token_in(Address.parse(verp), BOUNCE_BASE)
    assert token is not None and len(token) == 32
    assert event.detail["kind"] == "permanent" and event.detail["status"] == "5.1.1"
    assert event.detail["hold_ended"] == "true"
    [notice] = harness.notices("bounced")
    assert notice["To"] == CLERK
    assert "Adresse existiert nicht" in notice["Subject"]
    assert "Ihr Bescheid" in notice["Subject"] and "verschlüsseln" not in notice["Subject"]
    text = notice.get_content()
    assert f"Die Adresse {CITIZEN} existiert nicht" in text
    assert f"the address {CITIZEN} does not exist" in text
    assert "User unknown in virtual mailbox table" in text
    assert "123A456789" not in text


async def started(harness, relay) -> tuple[SmtpGateway, tuple[str, int]]:
    gateway = SmtpGateway(harness.runtime)
    [(host, port)] = await gateway.start()
    relay.siegel = (host, port)
    return gateway, (host, port)


def invitation_sender(relay: BouncingRelay) -> str:
    [sender] = [sender for sender, rcpts in relay.accepted if rcpts == [CITIZEN]]
    return sender


async def test_a_delay_report_keeps_the_copy_held(siegel_harness, relay, mx):
    mx.rcpt_reply = lambda rcpt: "450 4.2.0 <buerger@example.net>: Mailbox busy" if (
        rcpt == CITIZEN) else None
    async with siegel_harness(config=config_for(relay)) as harness:
        gateway, _ = await started(harness, relay)
        try:
            message_id = await send_to_citizen(harness)
            await harness.process()

            async def reported() -> bool:
                return bool(await bounce_events(harness, message_id))
            await eventually(reported, "the delay report to reach siegel")
            await harness.process()
            [event] = await bounce_events(harness, message_id)
            assert (await harness.states(message_id))[CITIZEN] is RecipientState.HELD
            token = token_in(Address.parse(invitation_sender(relay)), BOUNCE_BASE)
            assert token is not None
            assert await harness.runtime.bounce_token_known(token)  # a failure may follow
        finally:
            await gateway.stop()
    assert event.detail["kind"] == "transient" and event.detail["status"] == "4.2.0"
    assert event.detail["hold_ended"] == "false"
    assert harness.notices("bounced") == []


EXIM_BOUNCE = """\
Return-path: <>
From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: {sender}
Subject: Mail delivery failed: returning message to sender
Auto-Submitted: auto-replied

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  buerger@example.net
    SMTP error from remote mail server after RCPT TO:<buerger@example.net>:
    host mx.example.net [192.0.2.25]: 550 5.1.1 User unknown

------ This is a copy of the message, including all the headers. ------

Subject: Testbehoerde hat eine verschluesselte Nachricht fuer Sie
"""

VACATION = """\
From: buerger@example.net
To: {sender}
Subject: Abwesenheitsnotiz
Auto-Submitted: auto-replied

Ich bin bis zum 10. Januar nicht im Haus.
"""


@pytest.mark.parametrize(("text", "mail_from", "state", "kind"), [
    # Exim's plain-text bounce has no delivery-status part; it is clearly a permanent failure.
    (EXIM_BOUNCE, "", RecipientState.FAILED, "permanent"),
    # An auto-reply to the envelope sender is no failure at all.
    (VACATION, CITIZEN, RecipientState.HELD, "none"),
])
async def test_bounces_without_a_delivery_status_part(siegel_harness, relay, text, mail_from,
                                                      state, kind):
    async with siegel_harness(config=config_for(relay)) as harness:
        gateway, listener = await started(harness, relay)
        try:
            message_id = await send_to_citizen(harness)
            await harness.process()

            async def relayed() -> bool:
                return any(rcpts == [CITIZEN] for _, rcpts in relay.accepted)
            await eventually(relayed, "the invitation to reach the relay")
            sender = invitation_sender(relay)
            await asyncio.to_thread(relay.send, listener, mail_from, sender,
                                    text.format(sender=sender).encode())
            await harness.process()
            assert (await harness.states(message_id))[CITIZEN] is state
            [event] = await bounce_events(harness, message_id)
            assert event.detail["kind"] == kind
        finally:
            await gateway.stop()


async def test_the_listener_refuses_unknown_bounce_addresses_and_mixed_transactions(
        siegel_harness, relay):
    async with siegel_harness(config=config_for(relay)) as harness:
        gateway, listener = await started(harness, relay)
        try:
            await send_to_citizen(harness)
            await harness.process()

            async def relayed() -> bool:
                return any(rcpts == [CITIZEN] for _, rcpts in relay.accepted)
            await eventually(relayed, "the invitation to reach the relay")
            sender = invitation_sender(relay)

            def dialogue() -> dict[str, tuple[int, bytes]]:
                answers = {}
                with smtplib.SMTP(*listener, timeout=30) as client:
                    client.ehlo()
                    for rcpt in ("siegel-bounce+" + "a" * 32 + "@behoerde.example",
                                 "siegel-bounce+nonsense@behoerde.example",
                                 "siegel-bounce@behoerde.example"):
                        client.mail("")
                        answers[rcpt] = client.rcpt(rcpt)
                        client.rset()
                    client.mail("")
                    answers["known"] = client.rcpt(sender.upper())  # case folded on the way
                    answers["then other"] = client.rcpt(CLERK)
                    client.rset()
                    client.mail("")
                    client.rcpt(CLERK)
                    answers["other then bounce"] = client.rcpt(sender)
                    client.rset()
                return answers

            answers = await asyncio.to_thread(dialogue)
        finally:
            await gateway.stop()
    unknown = (550, b"5.1.1 Unknown or expired bounce address")
    assert answers["siegel-bounce+" + "a" * 32 + "@behoerde.example"] == unknown
    assert answers["siegel-bounce+nonsense@behoerde.example"] == unknown
    assert answers["siegel-bounce@behoerde.example"] == unknown
    assert answers["known"] == (250, b"2.1.5 OK (bounce address)")
    separate = (452, b"4.5.3 Bounces and other mail: send them in separate transactions")
    assert answers["then other"] == separate
    assert answers["other then bounce"] == separate


async def test_without_a_bounce_address_invitations_keep_the_null_sender(siegel_harness, relay):
    config = config_for(relay)
    config["tenants"]["test"]["bounce_address"] = ""
    async with siegel_harness(config=config) as harness:
        await send_to_citizen(harness)
        await harness.process()

        async def relayed() -> bool:
            return any(rcpts == [CITIZEN] for _, rcpts in relay.accepted)
        await eventually(relayed, "the invitation to reach the relay")
    assert invitation_sender(relay) == "<>"  # aiosmtpd shows the null sender so


async def test_a_tenant_may_name_its_own_bounce_address(siegel_harness, relay):
    config = config_for(relay)
    config["tenants"]["test"]["bounce_address"] = "Rueckläufer@behoerde.example"
    async with siegel_harness(config=config) as harness:
        assert str(harness.config.tenants["test"].bounce_address) == (
            "Rueckläufer@behoerde.example")
        await send_to_citizen(harness)
        await harness.process()

        async def relayed() -> bool:
            return any(rcpts == [CITIZEN] for _, rcpts in relay.accepted)
        await eventually(relayed, "the invitation to reach the relay")
    sender = Address.parse(invitation_sender(relay))
    base = harness.config.tenants["test"].bounce_address
    token = token_in(sender, base)
    assert token and sender == Address.parse(verp_address(base, token))


@pytest.mark.parametrize(("value", "problem"), [
    ("bounce+x@behoerde.example", "must not contain '+'"),
    ("keine-adresse", "has no '@'"),
])
def test_a_bad_bounce_address_is_a_precise_config_error(tmp_path, value, problem):
    from siegel.config import ConfigError, config_from_mapping
    from siegel.manager import PluginRegistry

    data = {"tenants": {"t": {"name": "T", "domains": ["t.example"], "plugin_set": "baseline",
                              "bounce_address": value}}}
    with pytest.raises(ConfigError) as info:
        config_from_mapping(data, PluginRegistry.load(), source="siegel.toml", base_dir=tmp_path)
    [line] = info.value.problems
    assert line.startswith("tenants.t.bounce_address: ") and problem in line


# -- reading reports -----------------------------------------------------------------------------

ORIGINAL = make_message(to=CITIZEN)


@pytest.mark.parametrize(("action", "reply", "kind", "status"), [
    ("failed", "550 5.1.1 <buerger@example.net>: Recipient address rejected: User unknown",
     BounceKind.PERMANENT, "5.1.1"),
    ("failed", "554 5.7.1 <buerger@example.net>: Relay access denied", BounceKind.PERMANENT,
     "5.7.1"),
    ("delayed", "451 4.4.7 Message delayed", BounceKind.TRANSIENT, "4.4.7"),
    ("relayed", "250 2.0.0 Ok", BounceKind.NONE, ""),
    ("delivered", "250 2.0.0 Ok", BounceKind.NONE, ""),
])
def test_delivery_status_reports_are_read_by_action_and_status(action, reply, kind, status):
    code = int(reply[:3])
    raw = postfix_bounce(sender="siegel-bounce+x@behoerde.example", recipient=CITIZEN,
                         code=code, reply=reply, original=ORIGINAL, action=action)
    report = read_bounce(raw, Address.parse(CITIZEN))
    assert (report.kind, report.status) == (kind, status)
    if kind is BounceKind.PERMANENT:
        assert report.diagnostic == reply


def test_the_reason_tells_an_unknown_address_from_a_refusal():
    citizen = Address.parse(CITIZEN)
    raw = postfix_bounce(sender="s@behoerde.example", recipient=CITIZEN, code=554,
                         reply="554 5.7.1 Spam", original=ORIGINAL)
    refusal = read_bounce(raw, citizen)
    assert not refusal.address_unknown
    assert "lehnt die Zustellung dauerhaft ab (554 5.7.1 Spam)" in refusal.reason(citizen).de
    unknown = read_bounce(raw.replace(b"5.7.1", b"5.1.1"), citizen)
    assert unknown.address_unknown
    assert unknown.reason(citizen).en.startswith(f"the address {CITIZEN} does not exist")


def test_a_diagnostic_is_shortened_and_cannot_carry_control_characters():
    long_reply = "550 5.1.1 " + "x" * 1000
    raw = postfix_bounce(sender="s@behoerde.example", recipient=CITIZEN, code=550,
                         reply=long_reply, original=ORIGINAL)
    report = read_bounce(raw.replace(b"x" * 10, b"\x1b[31m" + b"x" * 5, 1), Address.parse(CITIZEN))
    assert len(report.diagnostic) <= 301 and "\x1b" not in report.diagnostic


def test_a_report_about_someone_else_is_read_for_the_tokens_recipient():
    raw = postfix_bounce(sender="s@behoerde.example", recipient=CITIZEN, code=550,
                         reply="550 5.1.1 User unknown", original=ORIGINAL)
    # Another recipient, delivered, listed first in the same report.
    other = (b"Final-Recipient: rfc822; andere@example.net\r\nAction: delivered\r\n"
             b"Status: 2.0.0\r\n\r\nFinal-Recipient: rfc822; " + CITIZEN.encode())
    raw = raw.replace(b"Final-Recipient: rfc822; " + CITIZEN.encode(), other, 1)
    assert read_bounce(raw, Address.parse(CITIZEN)).kind is BounceKind.PERMANENT
    assert read_bounce(b"\xff\xfe not a mail", Address.parse(CITIZEN)).kind is BounceKind.NONE


async def test_every_message_waiting_for_the_unknown_address_ends(siegel_harness, relay, mx):
    mx.rcpt_reply = lambda rcpt: "550 5.1.1 User unknown" if rcpt == CITIZEN else None
    async with siegel_harness(config=config_for(relay)) as harness:
        gateway, _ = await started(harness, relay)
        try:
            first = await send_to_citizen(harness)
            second = await send_to_citizen(harness)  # waits for the same invitation
            await harness.process()
            assert len([1 for _, rcpts in relay.accepted if rcpts == [CITIZEN]]) == 1

            async def bounced() -> bool:
                return bool(await bounce_events(harness, first))
            await eventually(bounced, "the bounce to reach siegel")
            await harness.process()
            states = [(await harness.states(m))[CITIZEN] for m in (first, second)]
            [event] = await bounce_events(harness, second)

            async def told() -> bool:
                return len(harness.notices("bounced")) == 2
            await eventually(told, "a notice for each message")
        finally:
            await gateway.stop()
    assert states == [RecipientState.FAILED, RecipientState.FAILED]
    assert event.detail["hold_ended"] == "true"


async def test_an_invitation_the_relay_refuses_itself_ends_the_copy_too(siegel_harness):
    # The tenant's relay checks recipients itself (Postfix reject_unverified_recipient): the
    # invitation fails at siegel's own delivery, and no bounce will ever come.
    config = {"tenants": {"test": {"plugin_set": "district", "domains": ["behoerde.example"]}},
              "portal": {"public_base_url": "https://post.behoerde.example"}}
    async with siegel_harness(config=config) as harness:
        harness.sink.rcpt_reply = lambda rcpt: (
            "550 5.1.1 <buerger@example.net>: Recipient address rejected: undeliverable address"
            if rcpt == CITIZEN else None)
        message_id = await send_to_citizen(harness)
        await harness.process()
        [record] = await harness.store.recipients(message_id)
        [event] = await bounce_events(harness, message_id)
    assert record.state is RecipientState.FAILED
    assert record.detail == "address does not exist"
    assert event.detail["status"] == "5.1.1"
    [notice] = harness.notices("bounced")
    assert "undeliverable address" in notice.get_content()


async def test_a_verp_token_is_stored_hashed_and_expires(siegel_harness):
    from siegel.bounces import TOKENS, issue, look_up

    async with siegel_harness() as harness:
        state = harness.runtime.state(TOKENS)
        token = await issue(state, tenant="test", message_id="m1",
                            recipient=Address.parse(CITIZEN))
        assert await state.get(token) is None  # not stored as itself
        found = await look_up(state, token)
        assert found is not None and (found.message_id, found.recipient) == ("m1", CITIZEN)
        harness.clock.advance(days=7, seconds=1)
        assert await look_up(state, token) is None
