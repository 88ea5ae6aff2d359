"""The SMTP listener, over real sockets: a real ``SmtpGateway`` around a real runtime and store,
spoken to by an ``aiosmtplib`` client.

What it must prove: 250 means "committed to disk", siegel is never an open relay, every refusal has
the right code, SMTPUTF8 mail is kept byte for byte, a store that fails gives 451 and loses nothing,
STARTTLS can be required, and what the listener accepts is what the pipeline delivers.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiosmtplib
import attrs
import pytest

from siegel import RecipientState, StoreError
from siegel.config import deep_merge
from siegel.crypto import ContentCipher
from siegel.gateway import SmtpGateway, server_tls_context
from siegel.sqlite_store import SQLiteStore
from siegel.testing import Harness, make_message, self_signed_certificate

SENDER = "sachbearbeitung@behoerde.example"
COLLEAGUE = "kollegin@behoerde.example"
CITIZEN = "buerger@example.net"
FOREIGN = "fremd@example.org"


@attrs.define
class Gateway:
    harness: Harness
    gateway: SmtpGateway
    host: str
    port: int

    def client(self, **options: Any) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(hostname=self.host, port=self.port, timeout=10, start_tls=False,
                               **options)

    async def second_connection(self) -> SQLiteStore:
        """A new connection to the same database file, with the same key (not the runtime's)."""
        base = self.harness.config.base_dir
        store = SQLiteStore(base / "var" / "siegel.db",
                            ContentCipher.from_key_file(base / "keys" / "store.key"))
        await store.open()
        return store


@pytest.fixture
def gateway(siegel_harness):
    """``gateway(listener={...}, config={...})``: a running listener on a free port."""

    @asynccontextmanager
    async def factory(listener: dict[str, Any] | None = None,
                      config: dict[str, Any] | None = None) -> AsyncIterator[Gateway]:
        data = deep_merge(
            {"listeners": [{"host": "127.0.0.1", "port": 0, **(listener or {})}]}, config or {})
        async with siegel_harness(config=data) as harness:
            smtp = SmtpGateway(harness.runtime)
            [(host, port)] = await smtp.start()
            assert port != 0
            try:
                yield Gateway(harness, smtp, host, port)
            finally:
                await smtp.stop()

    return factory


async def command(client: aiosmtplib.SMTP, line: str) -> tuple[int, str]:
    response = await client.execute_command(line.encode("utf-8"))
    return response.code, response.message


async def send_data(client: aiosmtplib.SMTP, raw: bytes) -> tuple[int, str]:
    try:
        response = await client.data(raw)
    except aiosmtplib.SMTPResponseException as exc:
        return exc.code, exc.message
    return response.code, response.message


async def transaction(client: aiosmtplib.SMTP, mail_from: str, rcpt_to: list[str],
                      raw: bytes, mail_options: str = "") -> tuple[int, str]:
    """MAIL, RCPT..., DATA; every step before DATA must succeed."""
    if client.is_ehlo_or_helo_needed:
        await client.ehlo()
    code, text = await command(client, f"MAIL FROM:<{mail_from}>{mail_options}")
    assert code == 250, text
    for rcpt in rcpt_to:
        code, text = await command(client, f"RCPT TO:<{rcpt}>")
        assert code == 250, (rcpt, text)
    return await send_data(client, raw)


def queued_id(text: str) -> str:
    assert "queued as " in text, text
    return text.rsplit(" ", 1)[1]


async def stored_ids(harness: Harness) -> set[str]:
    return {r.message_id for r in await harness.store.list(limit=1000)}


# -- 250 means durable ---------------------------------------------------------------------------


async def test_250_only_after_the_message_is_on_disk(gateway):
    raw = make_message(to=[COLLEAGUE, CITIZEN], body="Zeile eins\n.Zeile mit Punkt\n..\nEnde\n")
    async with gateway() as gw:
        client = gw.client()
        await client.connect()
        code, text = await transaction(client, SENDER, [COLLEAGUE, CITIZEN], raw)
        assert code == 250, text
        message_id = queued_id(text)
        # A second connection to the database file sees the committed message right away.
        second = await gw.second_connection()
        try:
            message = await second.load(message_id)
            records = await second.recipients(message_id)
        finally:
            await second.close()
        await client.quit()
    assert message.raw == raw  # dot-stuffed lines included, byte for byte
    assert message.tenant == "test"
    assert str(message.envelope.mail_from) == SENDER
    assert [str(r) for r in message.envelope.rcpt_to] == [COLLEAGUE, CITIZEN]
    assert {r.recipient: r.state for r in records} == {
        COLLEAGUE: RecipientState.ACCEPTED, CITIZEN: RecipientState.ACCEPTED}


def hold_back_commits(store):
    """Make ``store.accept`` wait: ``entered`` is set when a message reaches it, and it commits
    once ``commit`` is set."""
    real_accept = store.accept
    entered, commit = asyncio.Event(), asyncio.Event()

    async def slow_accept(message, events=()):
        entered.set()
        await commit.wait()
        await real_accept(message, events)

    store.accept = slow_accept
    return entered, commit


async def test_no_answer_while_the_store_has_not_committed(gateway):
    """The client waits for the store: while the commit is held back, there is no 250."""
    async with gateway() as gw:
        entered, commit = hold_back_commits(gw.harness.store)
        client = gw.client()
        await client.connect()
        sending = asyncio.create_task(
            transaction(client, SENDER, [COLLEAGUE], make_message(to=COLLEAGUE)))
        await asyncio.wait_for(entered.wait(), 5)
        done, _ = await asyncio.wait({sending}, timeout=0.3)
        assert not done, "answered before the store committed"
        assert await stored_ids(gw.harness) == set()
        commit.set()
        code, text = await asyncio.wait_for(sending, 5)
        assert code == 250
        assert await stored_ids(gw.harness) == {queued_id(text)}
        await client.quit()


# -- never an open relay -------------------------------------------------------------------------


async def test_relay_denied_when_neither_sender_nor_recipient_is_local(gateway):
    async with gateway() as gw:
        client = gw.client()
        await client.connect()
        await client.ehlo()
        assert (await command(client, f"MAIL FROM:<{FOREIGN}>"))[0] == 250
        code, text = await command(client, f"RCPT TO:<{CITIZEN}>")
        assert (code, text.split()[0]) == (550, "5.7.1")
        assert "Relaying denied" in text
        # The null sender (a bounce) may not be relayed either.
        await client.rset()
        assert (await command(client, "MAIL FROM:<>"))[0] == 250
        assert (await command(client, f"RCPT TO:<{CITIZEN}>"))[0] == 550
        # With no accepted recipient there is no transaction to send data in.
        assert (await command(client, "DATA"))[0] == 503
        await client.quit()
        assert await stored_ids(gw.harness) == set()


async def test_inbound_mail_for_a_tenant_is_accepted(gateway):
    raw = make_message(sender=FOREIGN, to=[COLLEAGUE, SENDER])
    async with gateway() as gw:
        client = gw.client()
        await client.connect()
        code, text = await transaction(client, FOREIGN, [COLLEAGUE, SENDER], raw)
        assert code == 250, text
        message = await gw.harness.store.load(queued_id(text))
        await client.quit()
    assert message.raw == raw
    assert message.tenant == "test"
    assert str(message.envelope.mail_from) == FOREIGN


async def test_null_sender_bounce_to_a_tenant_is_accepted(gateway):
    raw = make_message(sender="mailer-daemon@example.org", to=COLLEAGUE, subject="Undeliverable")
    async with gateway() as gw:
        client = gw.client()
        await client.connect()
        code, text = await transaction(client, "", [COLLEAGUE], raw)
        assert code == 250, text
        message = await gw.harness.store.load(queued_id(text))
        await client.quit()
    assert message.envelope.mail_from is None
    assert message.raw == raw


async def test_inbound_recipients_of_two_tenants_need_two_transactions(gateway):
    config = {"tenants": {"zweite": {"name": "Zweite Behörde", "domains": ["amt2.example"],
                                     "plugin_set": "baseline"}}}
    async with gateway(config=config) as gw:
        client = gw.client()
        await client.connect()
        await client.ehlo()
        assert (await command(client, f"MAIL FROM:<{FOREIGN}>"))[0] == 250
        assert (await command(client, f"RCPT TO:<{COLLEAGUE}>"))[0] == 250
        assert (await command(client, "RCPT TO:<kollege@behoerde.example>"))[0] == 250
        code, text = await command(client, "RCPT TO:<leitung@amt2.example>")
        assert (code, text.split()[0]) == (452, "4.5.3")
        code, text = await send_data(client, make_message(sender=FOREIGN, to=COLLEAGUE))
        assert code == 250, text
        records = await gw.harness.store.recipients(queued_id(text))
        assert {r.recipient for r in records} == {COLLEAGUE, "kollege@behoerde.example"}
        assert {r.tenant for r in records} == {"test"}
        # An outgoing message of one tenant may go to another tenant's domain.
        code, text = await transaction(client, SENDER, ["leitung@amt2.example"],
                                       make_message(to="leitung@amt2.example"))
        assert code == 250, text
        await client.quit()


# -- envelope checks -----------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["ohne-at-zeichen", "a@keine-tld", "a@-bindestrich-.example",
                                     "a..b@behoerde.example"])
async def test_invalid_sender_syntax_gets_553(gateway, address):
    async with gateway() as gw:
        client = gw.client()
        await client.connect()
        await client.ehlo()
        code, text = await command(client, f"MAIL FROM:<{address}>")
        assert code == 553, text
        # No transaction was opened.
        assert (await command(client, f"RCPT TO:<{COLLEAGUE}>"))[0] == 503
        await client.quit()


@pytest.mark.parametrize("address", ["ohne-at-zeichen", "a@keine-tld", "a@[192.0.2.1]",
                                     "a..b@behoerde.example"])
async def test_invalid_recipient_syntax_gets_553(gateway, address):
    async with gateway() as gw:
        client = gw.client()
        await client.connect()
        await client.ehlo()
        assert (await command(client, f"MAIL FROM:<{SENDER}>"))[0] == 250
        code, text = await command(client, f"RCPT TO:<{address}>")
        assert code == 553, text
        # The transaction goes on with the valid recipients.
        assert (await command(client, f"RCPT TO:<{COLLEAGUE}>"))[0] == 250
        code, text = await send_data(client, make_message(to=COLLEAGUE))
        assert code == 250, text
        records = await gw.harness.store.recipients(queued_id(text))
        assert [r.recipient for r in records] == [COLLEAGUE]
        await client.quit()


async def test_addresses_that_are_not_utf8_get_553(gateway):
    async with gateway() as gw:
        client = gw.client()
        await client.connect()
        await client.ehlo()
        response = await client.execute_command(b"MAIL FROM:<\xff\xfe@behoerde.example> SMTPUTF8")
        assert response.code == 553, response.message
        assert "UTF-8" in response.message
        assert (await command(client, f"MAIL FROM:<{SENDER}>"))[0] == 250
        response = await client.execute_command(b"RCPT TO:<k\xe4se@behoerde.example>")
        assert response.code == 553, response.message
        await client.quit()


async def test_too_many_recipients_get_452_and_the_rest_is_kept(gateway):
    recipients = [f"person{i}@behoerde.example" for i in range(4)]
    async with gateway(listener={"max_recipients": 3}) as gw:
        client = gw.client()
        await client.connect()
        await client.ehlo()
        assert (await command(client, f"MAIL FROM:<{SENDER}>"))[0] == 250
        for rcpt in recipients[:3]:
            assert (await command(client, f"RCPT TO:<{rcpt}>"))[0] == 250
        code, text = await command(client, f"RCPT TO:<{recipients[3]}>")
        assert (code, text.split()[0]) == (452, "4.5.3")
        code, text = await send_data(client, make_message(to=recipients))
        assert code == 250, text
        records = await gw.harness.store.recipients(queued_id(text))
        assert [r.recipient for r in records] == recipients[:3]
        await client.quit()


async def test_size_limit_gets_552_and_nothing_is_stored(gateway):
    small = make_message(to=COLLEAGUE, body="kurz\n")
    big = make_message(to=COLLEAGUE, body="x" * 70 + "\n" + ("y" * 70 + "\n") * 60)
    limit = len(small) + 200
    assert len(big) > limit
    async with gateway(listener={"max_message_size": limit}) as gw:
        client = gw.client()
        await client.connect()
        ehlo = await client.ehlo()
        assert f"SIZE {limit}" in ehlo.message
        # Declared size: refused at MAIL, before any data is sent.
        code, _ = await command(client, f"MAIL FROM:<{SENDER}> SIZE={len(big)}")
        assert code == 552
        # Undeclared size: refused after the data.
        code, text = await transaction(client, SENDER, [COLLEAGUE], big)
        assert code == 552, text
        assert await stored_ids(gw.harness) == set()
        # A message within the limit goes through on the same connection.
        code, text = await transaction(client, SENDER, [COLLEAGUE], small)
        assert code == 250, text
        assert await stored_ids(gw.harness) == {queued_id(text)}
        await client.quit()


# -- SMTPUTF8 ------------------------------------------------------------------------------------


UTF8_SENDER = "jürgen.müller@behoerde.example"
UTF8_RECIPIENT = "zoë.straße@behoerde.example"
UTF8_MESSAGE = (
    "From: Jürgen Müller <jürgen.müller@behoerde.example>\r\n"
    "To: Zoë Straße <zoë.straße@behoerde.example>\r\n"
    "Subject: Grüße aus dem Rathaus – Änderung\r\n"
    "Date: Mon, 05 Jan 2026 09:00:00 +0000\r\n"
    "Message-ID: <utf8-test@behoerde.example>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Schöne Grüße, ½ € – 日本語\r\n"
).encode()


async def test_smtputf8_message_is_stored_byte_for_byte(gateway):
    async with gateway() as gw:
        client = gw.client()
        await client.connect()
        ehlo = await client.ehlo()
        assert "SMTPUTF8" in ehlo.message
        code, text = await transaction(client, UTF8_SENDER, [UTF8_RECIPIENT], UTF8_MESSAGE,
                                       mail_options=" SMTPUTF8 BODY=8BITMIME")
        assert code == 250, text
        second = await gw.second_connection()
        try:
            message = await second.load(queued_id(text))
        finally:
            await second.close()
        await client.quit()
    assert message.raw == UTF8_MESSAGE
    assert str(message.envelope.mail_from) == UTF8_SENDER
    assert [str(r) for r in message.envelope.rcpt_to] == [UTF8_RECIPIENT]


# -- a failing store -----------------------------------------------------------------------------


async def test_store_failure_gives_451_and_nothing_is_lost(gateway, monkeypatch):
    raw = make_message(to=COLLEAGUE, subject="Wichtig")
    async with gateway() as gw:
        store = gw.harness.store

        async def disk_full(message, events=()):
            raise StoreError("database or disk is full")

        with monkeypatch.context() as patch:
            patch.setattr(store, "accept", disk_full)
            client = gw.client()
            await client.connect()
            code, text = await transaction(client, SENDER, [COLLEAGUE], raw)
        assert (code, text.split()[0]) == (451, "4.3.0")
        assert await stored_ids(gw.harness) == set()
        # A temporary answer: the client still has the message and sends it again.
        code, text = await transaction(client, SENDER, [COLLEAGUE], raw)
        assert code == 250, text
        assert (await store.load(queued_id(text))).raw == raw
        await client.quit()


async def test_closed_store_gives_451_then_the_retry_is_stored(gateway):
    raw = make_message(to=COLLEAGUE, subject="Nochmal")
    async with gateway() as gw:
        store = gw.harness.store
        client = gw.client()
        await client.connect()
        await store.close()
        code, text = await transaction(client, SENDER, [COLLEAGUE], raw)
        assert (code, text.split()[0]) == (451, "4.3.0")
        await store.open()
        assert await stored_ids(gw.harness) == set()
        code, text = await transaction(client, SENDER, [COLLEAGUE], raw)
        assert code == 250, text
        assert await stored_ids(gw.harness) == {queued_id(text)}
        await client.quit()


# -- who may connect -----------------------------------------------------------------------------


async def test_client_outside_allowed_clients_gets_554_at_mail(gateway):
    async with gateway(listener={"allowed_clients": ["127.0.0.2/32"]}) as gw:
        refused = gw.client()
        await refused.connect()
        await refused.ehlo()
        code, text = await command(refused, f"MAIL FROM:<{SENDER}>")
        assert (code, text.split()[0]) == (554, "5.7.1")
        assert (await command(refused, f"RCPT TO:<{COLLEAGUE}>"))[0] == 503
        await refused.quit()
        assert await stored_ids(gw.harness) == set()


def can_bind(address: str) -> bool:
    try:
        with socket.socket() as probe:
            probe.bind((address, 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not can_bind("127.0.0.2"), reason="127.0.0.2 is not a local address here")
async def test_client_inside_allowed_clients_may_send(gateway):
    async with gateway(listener={"allowed_clients": ["127.0.0.2/32"]}) as gw:
        allowed = gw.client(source_address=("127.0.0.2", 0))
        await allowed.connect()
        code, text = await transaction(allowed, SENDER, [COLLEAGUE], make_message(to=COLLEAGUE))
        assert code == 250, text
        await allowed.quit()


# -- STARTTLS ------------------------------------------------------------------------------------


async def test_starttls_required_refuses_mail_before_tls(gateway, tmp_path):
    cert_file, key_file = self_signed_certificate(tmp_path)
    listener = {"starttls": "required", "tls_certificate": str(cert_file),
                "tls_key": str(key_file), "hostname": "localhost"}
    client_tls = ssl.create_default_context(cafile=str(cert_file))
    async with gateway(listener=listener) as gw:
        client = gw.client()
        await client.connect()
        ehlo = await client.ehlo()
        assert "STARTTLS" in ehlo.message
        code, _ = await command(client, f"MAIL FROM:<{SENDER}>")
        assert code == 530
        await client.starttls(tls_context=client_tls, server_hostname="localhost")
        tls = client.get_transport_info("ssl_object")
        assert tls is not None
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        await client.ehlo()
        raw = make_message(to=COLLEAGUE)
        code, text = await transaction(client, SENDER, [COLLEAGUE], raw)
        assert code == 250, text
        assert (await gw.harness.store.load(queued_id(text))).raw == raw
        await client.quit()
    server_context = server_tls_context(gw.harness.config.listeners[0], gw.harness.config)
    assert server_context is not None
    assert server_context.minimum_version >= ssl.TLSVersion.TLSv1_2


async def test_starttls_optional_is_offered_but_not_enforced(gateway, tmp_path):
    cert_file, key_file = self_signed_certificate(tmp_path)
    listener = {"starttls": "optional", "tls_certificate": str(cert_file),
                "tls_key": str(key_file), "hostname": "localhost"}
    async with gateway(listener=listener) as gw:
        client = gw.client()
        await client.connect()
        assert "STARTTLS" in (await client.ehlo()).message
        code, text = await transaction(client, SENDER, [COLLEAGUE], make_message(to=COLLEAGUE))
        assert code == 250, text
        await client.quit()


# -- from the listener to the relay --------------------------------------------------------------


async def test_end_to_end_internal_delivered_external_quarantined_sender_told(gateway):
    raw = make_message(to=[COLLEAGUE, CITIZEN], subject="Bescheid",
                       body="GEHEIMER INHALT für drinnen\n")
    async with gateway() as gw:
        client = gw.client()
        await client.connect()
        code, text = await transaction(client, SENDER, [COLLEAGUE, CITIZEN], raw)
        assert code == 250, text
        await client.quit()
        message_id = queued_id(text)
        await gw.harness.runtime.run_until_idle()
        assert await gw.harness.states(message_id) == {
            COLLEAGUE: RecipientState.DELIVERED, CITIZEN: RecipientState.QUARANTINED}
        sink = gw.harness.sink
        [delivered] = sink.to(COLLEAGUE)
        assert delivered.raw == raw
        assert delivered.mail_from == SENDER
        assert delivered.rcpt_to == (COLLEAGUE,)
        assert sink.to(CITIZEN) == []
        [notice] = gw.harness.notices("quarantined")
        [notice_mail] = sink.to(SENDER)
        assert notice_mail.mail_from == ""  # notices use the null sender
        assert notice["To"] == SENDER
        assert notice["X-Siegel-Message-Id"] == message_id
        content = notice.get_content()
        assert "angehalten" in content and "NICHT zugestellt" in content  # German
        assert "stopped" in content and "NOT delivered" in content  # English
        assert CITIZEN in content
        assert all(b"GEHEIMER INHALT" not in m.raw for m in sink.messages if m is not delivered)


async def test_end_to_end_smtputf8_arrives_byte_for_byte(gateway):
    async with gateway() as gw:
        client = gw.client()
        await client.connect()
        code, text = await transaction(client, UTF8_SENDER, [UTF8_RECIPIENT], UTF8_MESSAGE,
                                       mail_options=" SMTPUTF8 BODY=8BITMIME")
        assert code == 250, text
        await client.quit()
        await gw.harness.runtime.run_until_idle()
        assert await gw.harness.states(queued_id(text)) == {
            UTF8_RECIPIENT: RecipientState.DELIVERED}
        [delivered] = gw.harness.sink.to(UTF8_RECIPIENT)
    assert delivered.raw == UTF8_MESSAGE
    assert delivered.mail_from == UTF8_SENDER


# -- stopping ------------------------------------------------------------------------------------


async def test_stop_answers_messages_being_stored_and_drops_idle_clients(gateway):
    async with gateway() as gw:
        entered, commit = hold_back_commits(gw.harness.store)
        idle = gw.client()
        await idle.connect()
        await idle.ehlo()
        busy = gw.client()
        await busy.connect()
        sending = asyncio.create_task(
            transaction(busy, SENDER, [COLLEAGUE], make_message(to=COLLEAGUE)))
        await asyncio.wait_for(entered.wait(), 5)
        stopping = asyncio.create_task(gw.gateway.stop())
        done, _ = await asyncio.wait({stopping}, timeout=0.2)
        assert not done, "stopped while a message was being stored"
        commit.set()
        code, text = await asyncio.wait_for(sending, 5)
        assert code == 250, text
        await asyncio.wait_for(stopping, 5)
        # The idle client was disconnected, and nobody can connect any more.
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await idle.noop()
        with pytest.raises((aiosmtplib.SMTPConnectError, OSError)):
            await gw.client().connect()
        assert await stored_ids(gw.harness) == {queued_id(text)}
