"""One message must not stop everyone: header limits, parsing off the event loop, time limits that
hold for CPU-bound plugins.

The listener tests use a real ``SmtpGateway`` on a free port, a real runtime worker and store, and
``aiosmtplib`` clients.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiosmtplib

from siegel import Classifier, Finding, Level, RecipientState, Text, Transformer, hookimpl
from siegel.admission import header_block_size
from siegel.config import deep_merge
from siegel.gateway import SmtpGateway
from siegel.testing import Harness, make_message

SENDER = "sachbearbeitung@behoerde.example"
COLLEAGUE = "kollegin@behoerde.example"
CITIZEN = "buerger@example.net"


def folded_encoded_words(size: int) -> bytes:
    """A Subject of about ``size`` bytes of folded RFC 2047 words: what the email package parses
    in time that grows faster than the field."""
    words = []
    total = 0
    index = 0
    while total < size:
        word = f"=?utf-8?q?Kunde_=C3=A4_{index}?="
        words.append(word)
        total += len(word) + 3
        index += 1
    return ("Subject: " + "\r\n ".join(words) + "\r\n").encode("ascii")


def with_header(field: bytes, *, to: str = COLLEAGUE, body: str = "Hallo\r\n") -> bytes:
    return (f"From: {SENDER}\r\nTo: {to}\r\nMessage-ID: <stall@behoerde.example>\r\n".encode()
            + field + b"\r\n" + body.encode())


@asynccontextmanager
async def listening(siegel_harness: Any, listener: dict[str, Any] | None = None,
                    config: dict[str, Any] | None = None
                    ) -> AsyncIterator[tuple[Harness, str, int]]:
    data = deep_merge(
        {"listeners": [{"host": "127.0.0.1", "port": 0, **(listener or {})}]}, config or {})
    async with siegel_harness(config=data) as harness:
        smtp = SmtpGateway(harness.runtime)
        [(host, port)] = await smtp.start()
        try:
            yield harness, host, port
        finally:
            await smtp.stop()


async def send(host: str, port: int, raw: bytes, rcpt: str = COLLEAGUE) -> tuple[int, str]:
    """EHLO, MAIL, RCPT, DATA, QUIT; the DATA answer."""
    client = aiosmtplib.SMTP(hostname=host, port=port, timeout=60, start_tls=False)
    await client.connect()
    try:
        await client.ehlo()
        await client.mail(SENDER)
        await client.rcpt(rcpt)
        try:
            response = await client.data(raw)
        except aiosmtplib.SMTPResponseException as exc:
            return exc.code, exc.message
        return response.code, response.message
    finally:
        client.close()


# -- the header block limit at DATA ----------------------------------------------------------


def test_header_block_size_looks_no_further_than_the_limit() -> None:
    assert header_block_size(b"A: b\r\n\r\nbody", 100) == 4
    assert header_block_size(b"A: b\n\nbody", 100) == 4
    assert header_block_size(b"\r\nonly a body", 100) == 0
    assert header_block_size(b"A: b\r\nno blank line", 100) == len(b"A: b\r\nno blank line")
    huge = b"X: " + b"y" * 1000 + b"\r\n\r\nbody"
    assert header_block_size(huge, 100) == 101


async def test_a_header_block_over_the_limit_gets_552_and_nothing_is_stored(siegel_harness):
    limit = 20_000
    big = with_header(folded_encoded_words(limit + 100))
    fits = with_header(folded_encoded_words(limit - 500))
    async with listening(siegel_harness, listener={"max_header_size": limit}) as (
            harness, host, port):
        code, text = await send(host, port, big)
        assert code == 552, text
        assert "5.3.4" in text and str(limit) in text
        assert await harness.store.list() == []
        code, text = await send(host, port, fits)
        assert code == 250, text
        assert len(await harness.store.list()) == 1


async def test_the_default_header_limit_is_100_kb(siegel_harness):
    async with listening(siegel_harness) as (_harness, host, port):
        code, text = await send(host, port, with_header(folded_encoded_words(1024 * 1024)))
        assert code == 552, text
        code, text = await send(host, port, with_header(folded_encoded_words(90 * 1024)))
        assert code == 250, text


# -- parsing off the event loop --------------------------------------------------------------


def many_parts(count: int, to: str = CITIZEN) -> bytes:
    """A message of ``count`` tiny attachments: within every size limit, and seconds of parsing."""
    parts = b"".join(
        b'--b\r\nContent-Type: text/plain; charset=utf-8; name="t%d.txt"\r\n'
        b'Content-Disposition: attachment; filename="t%d.txt"\r\n\r\nx\r\n' % (i, i)
        for i in range(count))
    return (f"From: {SENDER}\r\nTo: {to}\r\nSubject: Teile\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="b"\r\n\r\n').encode() + parts + b"--b--\r\n"


async def test_other_clients_are_answered_while_a_pathological_message_is_read(siegel_harness):
    """A message of 20 000 parts (2.5 MB, within every default limit) takes seconds to parse and
    read: meanwhile, a small message's whole SMTP dialogue is answered within a generous bound."""
    config = {"delivery": {"classify_timeout_seconds": 120, "poll_seconds": 0.1}}
    async with listening(siegel_harness, config=config) as (harness, host, port):
        runtime = harness.runtime
        await runtime.start()
        try:
            code, text = await send(host, port, many_parts(20_000), rcpt=CITIZEN)
            assert code == 250, text
            big_id = text.rsplit(" ", 1)[1]
            for _ in range(200):
                if runtime._in_flight:
                    break
                await asyncio.sleep(0.02)
            assert runtime._in_flight, "the worker never took the pathological message up"
            slowest = 0.0
            answered_while_busy = 0
            deadline = time.monotonic() + 120
            # Small messages, one after the other, until the pathological copy is done with.
            while (await harness.states(big_id))[CITIZEN] is RecipientState.ACCEPTED:
                assert time.monotonic() < deadline, "the pathological copy took over 120 s"
                started = time.monotonic()
                code, text = await asyncio.wait_for(send(host, port, make_message(
                    to=COLLEAGUE, body=f"klein {answered_while_busy}\n")), 30)
                slowest = max(slowest, time.monotonic() - started)
                assert code == 250, text
                answered_while_busy += 1
            print(f"{answered_while_busy} small messages while the big one was processed, "
                  f"slowest dialogue {slowest:.3f} s")
            # The bound only means something if the copy was processed for a while meanwhile.
            assert answered_while_busy >= 3
            assert slowest < 2.0, f"a small message took {slowest:.1f} s"
        finally:
            await runtime.stop(grace_seconds=0.1)


async def test_a_mime_part_with_an_oversized_header_block_is_quarantined_unread(siegel_harness):
    part_header = b"".join(b"X-Feld-%d: %s\r\n" % (i, b"w" * 40_000) for i in range(3))
    raw = (f"From: {SENDER}\r\nTo: {COLLEAGUE}\r\nSubject: Teile\r\nMIME-Version: 1.0\r\n"
           'Content-Type: multipart/mixed; boundary="grenze"\r\n\r\n--grenze\r\n').encode() + (
           part_header + b"Content-Type: text/plain\r\n\r\nText\r\n--grenze--\r\n")
    async with siegel_harness() as harness:
        message_id = await harness.send(raw, mail_from=SENDER, rcpt_to=[COLLEAGUE])
        await harness.process()
        [record] = await harness.store.recipients(message_id)
        assert record.state is RecipientState.QUARANTINED
        assert "header block larger than 102400 bytes (part 1)" in record.detail
        assert harness.sink.to(COLLEAGUE) == []


async def test_a_header_field_too_long_to_parse_is_refused_before_parsing(siegel_harness):
    """A part's Content-Type of 16 000 RFC 2231 parameters (474 KB) took the email package
    about 17 s to parse and read; it is refused at once, whatever the block limits say."""
    part_header = b"Content-Type: text/plain; " + b";\r\n ".join(
        f"p{i}*=utf-8''%C3%A4x{i}".encode() for i in range(16_000)) + b"\r\n"
    raw = (f"From: {SENDER}\r\nTo: {COLLEAGUE}\r\nSubject: Teile\r\nMIME-Version: 1.0\r\n"
           'Content-Type: multipart/mixed; boundary="grenze"\r\n\r\n--grenze\r\n').encode() + (
           part_header + b"\r\nText\r\n--grenze--\r\n")
    config = {"delivery": {"max_header_size": 4 * 1024 * 1024}}
    async with siegel_harness(config=config) as harness:
        message_id = await harness.send(raw, mail_from=SENDER, rcpt_to=[COLLEAGUE])
        started = time.monotonic()
        await harness.process()
        assert time.monotonic() - started < 6  # generous: reading it took about 17 s
        [record] = await harness.store.recipients(message_id)
        assert record.state is RecipientState.QUARANTINED
        assert "header field too large (the header field 'Content-Type' has" in record.detail
        assert harness.sink.to(COLLEAGUE) == []


# -- time limits for CPU-bound plugins -------------------------------------------------------


class ComputesWithoutAwaiting:
    """A classifier that computes for ``seconds`` on the event loop without ever awaiting."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    @hookimpl
    def siegel_register_classifiers(self) -> list[Classifier]:
        async def classify(ctx: Any) -> Finding:
            deadline = time.monotonic() + self.seconds
            while time.monotonic() < deadline:
                pass
            return Finding(level=Level.PLAIN, code="ok", reason=Text("gut", "fine"))
        return [Classifier(name="busy", classify=classify)]


async def test_a_classifier_that_overruns_without_awaiting_counts_as_timed_out(siegel_harness):
    config = {"delivery": {"classify_timeout_seconds": 0.3}}
    async with siegel_harness(config=config,
                              plugins=[("busy", ComputesWithoutAwaiting(0.6))]) as harness:
        message_id = await harness.send(make_message(to=COLLEAGUE), mail_from=SENDER,
                                        rcpt_to=[COLLEAGUE])
        await harness.process()
        [record] = await harness.store.recipients(message_id)
        assert record.state is RecipientState.QUARANTINED
        assert "classifier 'busy' (plugin 'busy'): timed out" in record.detail
        assert harness.sink.to(COLLEAGUE) == []


async def test_a_classifier_within_its_limit_is_not_affected(siegel_harness):
    async with siegel_harness(plugins=[("busy", ComputesWithoutAwaiting(0.01))]) as harness:
        message_id = await harness.send(make_message(to=COLLEAGUE), mail_from=SENDER,
                                        rcpt_to=[COLLEAGUE])
        await harness.process()
        assert await harness.states(message_id) == {COLLEAGUE: RecipientState.DELIVERED}


class Unwraps:
    """A transformer (as S/MIME decryption is one) whose output has an oversized header."""

    @hookimpl
    def siegel_register_transformers(self) -> list[Transformer]:
        async def transform(ctx: Any) -> bytes:
            return with_header(folded_encoded_words(200 * 1024), to=CITIZEN)
        return [Transformer(name="unwrap", transform=transform)]


async def test_a_transformed_message_gets_the_same_header_limit(siegel_harness):
    async with siegel_harness(plugins=[("unwrap", Unwraps())]) as harness:
        message_id = await harness.send(make_message(to=COLLEAGUE), mail_from=SENDER,
                                        rcpt_to=[COLLEAGUE])
        await harness.process()
        [record] = await harness.store.recipients(message_id)
        assert record.state is RecipientState.QUARANTINED
        assert ("header block of the transformed message larger than 102400 bytes (message)"
                in record.detail)
        assert harness.sink.to(COLLEAGUE) == []
        # The notice leaves out the subject; it is sent at once, without reading it.
        [notice] = harness.notices("quarantined")
        assert "Kunde" not in str(notice["Subject"])
